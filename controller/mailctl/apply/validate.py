"""Validate a staged revision with the daemons' own tools. Side effects: runs them.

A warning is a failure: anything Postfix or Cyrus would complain about at
reload is refused here, before it can go live.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from mailctl.apply import proc
from mailctl.errors import CommandError, ValidationError
from mailctl.layout import CYR_INFO
from mailctl.render.bundle import LIVE, Bundle
from mailctl.render.opendkim import CONF as OPENDKIM_CONF
from mailctl.render.opendkim import ED25519_CONF
from mailctl.render.opendmarc import CONF as OPENDMARC_CONF

_COMPLAINT = re.compile(r"(warning|fatal|error|panic):", re.IGNORECASE)


def _complaints(text: str) -> list[str]:
    return [line for line in text.splitlines() if _COMPLAINT.search(line)]


def _checked(argv: list[str], what: str, run: proc.Runner) -> str:
    try:
        done = run(argv, timeout=60)
    except CommandError as exc:
        raise ValidationError(f"{what}: {exc.output.strip() or exc}") from None
    bad = _complaints(done.stderr) + _complaints(done.stdout)
    if bad:
        raise ValidationError(f"{what}: " + "; ".join(bad))
    return done.stdout


SUFFIX = {"hash": ".db", "lmdb": ".lmdb"}
PATTERN_TABLES = (".pcre", ".regexp")


def _reuse(
    stage: Path, live: Path | None, rel: str, suffix: str, changed: frozenset[str] | None
) -> bool:
    """Copy the live revision's compiled table when its source did not change (a postmap
    costs ~20 ms each, and an edit touches one table or two)."""
    if changed is None or live is None or rel in changed:
        return False
    old = live / (rel + suffix)
    if not old.is_file():
        return False
    new = stage / (rel + suffix)
    shutil.copy2(old, new)
    os.utime(new)  # newer than its (backdated) source, as a fresh postmap would be
    return True


def compile_maps(
    stage: Path,
    bundle: Bundle,
    changed: frozenset[str] | None = None,
    live: Path | None = None,
    run: proc.Runner = proc.run,
) -> None:
    """postmap/postalias the compiled tables whose source changed (the others are copied
    from the live revision); open each changed pcre/regexp table once, which compiles
    every pattern (a bad one is a warning, and so a failure)."""
    conf = str(stage / "postfix")
    db = bundle.db_type
    suffix = SUFFIX[db]
    for rel in bundle.postmap:
        if _reuse(stage, live, rel, suffix, changed):
            continue
        src = stage / rel
        _checked(["postmap", "-c", conf, f"{db}:{src}"], f"postmap {rel}", run)
        # The compiled file is as secret as its source (relay passwords are root-only).
        os.chmod(src.with_name(src.name + suffix), src.stat().st_mode & 0o777)
    for rel in bundle.postalias:
        if not _reuse(stage, live, rel, suffix, changed):
            _checked(["postalias", "-c", conf, f"{db}:{stage / rel}"], f"postalias {rel}", run)
    for rel in sorted(changed if changed is not None else bundle.files):
        suffix = Path(rel).suffix
        if rel.startswith("postfix/") and suffix in PATTERN_TABLES:
            # exit 1 (not found) is expected; complaints are what counts
            done = run(
                ["postmap", "-c", conf, "-q", "mailctl-probe", f"{suffix[1:]}:{stage / rel}"],
                check=False,
                timeout=60,
            )
            bad = _complaints(done.stderr)
            if bad or done.returncode not in (0, 1):
                raise ValidationError(f"postmap {rel}: " + "; ".join(bad or [done.stderr]))


def cyrus(stage: Path, run: proc.Runner = proc.run) -> None:
    out = _checked(
        [
            CYR_INFO,
            "-C",
            str(stage / "cyrus/imapd.conf"),
            "-M",
            str(stage / "cyrus/cyrus.conf"),
            "conf-lint",
        ],
        "cyr_info conf-lint (imapd.conf)",
        run,
    )
    if out.strip():
        raise ValidationError(f"imapd.conf has options Cyrus does not know: {out.strip()}")


def fetchmail(stage: Path, run: proc.Runner = proc.run) -> None:
    """`fetchmail --configdump` parses the rc file without polling anything."""
    rc = str(stage / "fetchmail/fetchmailrc")
    try:
        run(
            [
                "/usr/sbin/runuser",
                "-u",
                "fetchmail",
                "--",
                "/usr/bin/fetchmail",
                "-f",
                rc,
                "--configdump",
                "--nosyslog",
            ],
            timeout=30,
        )
    except CommandError as exc:
        # Its complaint names the line; the file holds passwords, so nothing else is shown.
        first = next((ln for ln in exc.output.splitlines() if "fetchmail" in ln), "")
        raise ValidationError(f"fetchmailrc refused by fetchmail: {first[:300]}") from None


def _milter_check(stage: Path, rel: str, argv: list[str], run: proc.Runner) -> None:
    """`argv CONF` (a -n) parses the configuration and opens its files: the staged ones,
    through a copy of CONF whose paths point into the stage (removed again)."""
    conf = stage / rel
    check = conf.with_name(".check.conf")
    check.write_text(conf.read_text().replace(f"{LIVE}/", f"{stage}/"))
    try:
        run([*argv, str(check)], timeout=30)
    except CommandError as exc:
        said = exc.output.strip().replace(str(check), conf.name).replace(f"{stage}/", "")
        raise ValidationError(f"{Path(argv[0]).name} -n: {said[:300] or exc}") from None
    finally:
        check.unlink(missing_ok=True)


def opendkim(stage: Path, run: proc.Runner = proc.run) -> None:
    """The RSA signer's config, and the Ed25519 one's where dkim.ed25519 made it."""
    for rel in (OPENDKIM_CONF, ED25519_CONF):
        if (stage / rel).exists():
            _milter_check(stage, rel, ["/usr/sbin/opendkim", "-n", "-x"], run)


def opendmarc(stage: Path, run: proc.Runner = proc.run) -> None:
    _milter_check(stage, OPENDMARC_CONF, ["/usr/sbin/opendmarc", "-n", "-c"], run)


def tls(stage: Path, run: proc.Runner = proc.run) -> None:
    cert, key = stage / "tls/cert.pem", stage / "tls/key.pem"
    try:
        cert_pub = run(["openssl", "x509", "-in", str(cert), "-noout", "-pubkey"]).stdout
        key_pub = run(["openssl", "pkey", "-in", str(key), "-pubout"]).stdout
    except CommandError:
        raise ValidationError("tls: the certificate or key is not valid PEM") from None
    if cert_pub.strip() != key_pub.strip():
        raise ValidationError("tls: the key does not belong to the certificate (tls.key_file)")


def postfix_params(stage: Path, run: proc.Runner = proc.run) -> None:
    conf = str(stage / "postfix")
    _checked(["postconf", "-c", conf, "-n"], "postconf -n (main.cf)", run)
    _checked(["postconf", "-c", conf, "-M"], "postconf -M (master.cf)", run)


def postfix_config(stage: Path, run: proc.Runner = proc.run) -> None:
    """What `postfix check` checks of the configuration, and nothing of the queue.

    `postfix check` also runs postsuper over the live queue, so a crash's leftover
    file there used to fail a good config (and stop the server from starting); the
    queue is repaired at start instead (apply.queue). The rest of its checks that
    concern config: a postlog service when maillog_file is set, and config files
    owned by root and writable by nobody else.
    """
    conf = stage / "postfix"
    maillog = _checked(["postconf", "-c", str(conf), "-h", "maillog_file"], "postconf", run)
    if maillog.strip():
        services = _checked(["postconf", "-c", str(conf), "-M", "postlog/unix-dgram"], "", run)
        if not services.strip():
            raise ValidationError("master.cf: maillog_file is set but no postlog service runs")
    for path in [conf, *conf.rglob("*")]:
        if path.is_symlink():
            continue
        st = path.lstat()
        rel = path.relative_to(stage)
        if st.st_uid != 0 and os.geteuid() == 0:
            raise ValidationError(f"postfix check: {rel} is not owned by root")
        if st.st_mode & 0o022:
            raise ValidationError(f"postfix check: {rel} is group or other writable")


def stage(
    stage_dir: Path,
    bundle: Bundle,
    changed: frozenset[str] | None = None,
    live: Path | None = None,
    run: proc.Runner = proc.run,
) -> None:
    """Compile the maps of a staged revision and check what changed; ValidationError if bad.

    `changed=None` checks everything. Changed maps are compiled (postmap is their
    checker), unchanged ones copied from `live`; the config part of `postfix check`
    runs when main.cf or master.cf changed, Cyrus's and the TLS checks when their
    files did. Nothing here looks at the queue or any other live state.
    """

    def touched(*prefixes: str) -> bool:
        return changed is None or any(c.startswith(prefixes) for c in changed)

    compile_maps(stage_dir, bundle, changed, live, run)
    if touched("tls/"):
        tls(stage_dir, run)
    postfix_params(stage_dir, run)
    if touched("postfix/main.cf", "postfix/master.cf", "tls/"):
        postfix_config(stage_dir, run)
    if touched("cyrus/"):
        cyrus(stage_dir, run)
    if touched("opendkim/"):
        opendkim(stage_dir, run)
    if (stage_dir / OPENDMARC_CONF).exists() and touched("opendmarc/"):
        opendmarc(stage_dir, run)
    if (stage_dir / "fetchmail/fetchmailrc").exists() and touched("fetchmail/"):
        fetchmail(stage_dir, run)
