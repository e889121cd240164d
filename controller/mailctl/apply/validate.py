"""Validate a staged revision with the daemons' own tools. Side effects: runs them.

A warning is a failure: anything Postfix or Cyrus would complain about at
reload is refused here, before it can go live.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from mailctl.apply.proc import run
from mailctl.errors import CommandError, ValidationError
from mailctl.render.bundle import Bundle

CYR_INFO = "/usr/lib/cyrus/bin/cyr_info"
_COMPLAINT = re.compile(r"(warning|fatal|error|panic):", re.IGNORECASE)


def _complaints(text: str) -> list[str]:
    return [line for line in text.splitlines() if _COMPLAINT.search(line)]


def _checked(argv: list[str], what: str) -> str:
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
    stage: Path, bundle: Bundle, changed: frozenset[str] | None = None, live: Path | None = None
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
        _checked(["postmap", "-c", conf, f"{db}:{src}"], f"postmap {rel}")
        # The compiled file is as secret as its source (relay passwords are root-only).
        os.chmod(src.with_name(src.name + suffix), src.stat().st_mode & 0o777)
    for rel in bundle.postalias:
        if not _reuse(stage, live, rel, suffix, changed):
            _checked(["postalias", "-c", conf, f"{db}:{stage / rel}"], f"postalias {rel}")
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


def cyrus(stage: Path) -> None:
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
    )
    if out.strip():
        raise ValidationError(f"imapd.conf has options Cyrus does not know: {out.strip()}")


def fetchmail(stage: Path) -> None:
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


def tls(stage: Path) -> None:
    cert, key = stage / "tls/cert.pem", stage / "tls/key.pem"
    try:
        cert_pub = run(["openssl", "x509", "-in", str(cert), "-noout", "-pubkey"]).stdout
        key_pub = run(["openssl", "pkey", "-in", str(key), "-pubout"]).stdout
    except CommandError:
        raise ValidationError("tls: the certificate or key is not valid PEM") from None
    if cert_pub.strip() != key_pub.strip():
        raise ValidationError("tls: the key does not belong to the certificate (tls.key_file)")


def postfix_params(stage: Path) -> None:
    conf = str(stage / "postfix")
    _checked(["postconf", "-c", conf, "-n"], "postconf -n (main.cf)")
    _checked(["postconf", "-c", conf, "-M"], "postconf -M (master.cf)")


def stage(
    stage_dir: Path, bundle: Bundle, changed: frozenset[str] | None = None, live: Path | None = None
) -> None:
    """Compile the maps of a staged revision and check what changed; ValidationError if bad.

    `changed=None` checks everything. Changed maps are compiled (postmap is their
    checker), unchanged ones copied from `live`; `postfix check` (0.2 s: it walks the
    queue) runs when main.cf or master.cf changed, Cyrus's and the TLS checks when
    their files did.
    """

    def touched(*prefixes: str) -> bool:
        return changed is None or any(c.startswith(prefixes) for c in changed)

    compile_maps(stage_dir, bundle, changed, live)
    if touched("tls/"):
        tls(stage_dir)
    postfix_params(stage_dir)
    if touched("postfix/main.cf", "postfix/master.cf", "tls/"):
        _checked(["postfix", "-c", str(stage_dir / "postfix"), "check"], "postfix check")
    if touched("cyrus/"):
        cyrus(stage_dir)
    if (stage_dir / "fetchmail/fetchmailrc").exists() and touched("fetchmail/"):
        fetchmail(stage_dir)
