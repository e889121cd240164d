"""validate.* on staged revisions: what Postfix, Cyrus, fetchmail and openssl accept."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mailctl.apply import validate
from mailctl.errors import ValidationError
from mailctl.settings.loader import load_settings
from tests.integration import revision
from tests.integration.revision import append, bundle_for, realistic, rewrite, stage

REFERENCE = Path(__file__).resolve().parents[2] / "config" / "settings.reference.yaml"


def postmap_q(table: str, key: str, tool: str = "postmap") -> str | None:
    """A lookup as Postfix makes it, with the staged main.cf next to the table."""
    conf = table.partition(":")[2].rsplit("/", 1)[0]
    argv = [tool, "-c", conf, "-q", key, table]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1) and not done.stderr, done.stderr
    return done.stdout.strip() if done.returncode == 0 else None


@pytest.mark.parametrize("table_type", ["hash", "lmdb"])
def test_a_good_revision_passes_and_its_tables_answer(root: Path, table_type: str) -> None:
    bundle = bundle_for(realistic(maps={"table_type": table_type}))
    rev = stage(root, bundle)
    validate.stage(rev, bundle)

    suffix = validate.SUFFIX[table_type]
    for rel in (*bundle.postmap, *bundle.postalias):
        compiled = rev / (rel + suffix)
        assert compiled.is_file(), f"{rel} was not compiled"
        assert compiled.stat().st_mode & 0o777 == (rev / rel).stat().st_mode & 0o777
    postfix = rev / "postfix"
    assert postmap_q(f"{table_type}:{postfix}/virtual", "team@example.com") == (
        "alice@example.com, bob@example.com"
    )
    assert postmap_q(f"{table_type}:{postfix}/virtual", "nobody@example.net") is None
    assert postmap_q(f"{table_type}:{postfix}/aliases", "root", "postalias") == "alice@example.com"
    relay = postfix / "relay_passwords"
    assert relay.stat().st_mode & 0o077 == 0
    assert (postfix / f"relay_passwords{suffix}").stat().st_mode & 0o077 == 0
    assert revision.RELAY_PASSWORD in (
        postmap_q(f"{table_type}:{relay}", revision.RELAY_HOST) or ""
    )
    assert postmap_q(f"pcre:{postfix}/helo_access.pcre", "10-1-2-3.dyn.example") == (
        "REJECT dynamic address"
    )
    assert postmap_q(f"regexp:{postfix}/sender_access.regexp", "x@spam.example") == (
        "REJECT no spam"
    )


def test_the_reference_settings_pass(root: Path) -> None:
    bundle = bundle_for(load_settings(REFERENCE))
    validate.stage(stage(root, bundle), bundle)


def test_unchanged_tables_are_copied_from_the_live_revision(root: Path) -> None:
    bundle = bundle_for(realistic())
    live = stage(root, bundle)
    validate.stage(live, bundle)
    edited = bundle_for(realistic(aliases={"team@example.com": "bob@example.com"}))
    new = stage(root, edited)
    validate.stage(new, edited, frozenset({"postfix/virtual"}), live)

    copied, source = new / "postfix/vmailbox.db", new / "postfix/vmailbox"
    assert copied.read_bytes() == (live / "postfix/vmailbox.db").read_bytes()
    assert copied.stat().st_mtime > source.stat().st_mtime, "newer than its source"
    assert postmap_q(f"hash:{new}/postfix/virtual", "team@example.com") == "bob@example.com"
    assert postmap_q(f"hash:{live}/postfix/virtual", "team@example.com") == (
        "alice@example.com, bob@example.com"
    )


@pytest.mark.parametrize(
    ("rel", "line"),
    [
        ("postfix/helo_access.pcre", "/^(unclosed[0-9]+$/ REJECT\n"),
        ("postfix/helo_access.pcre", "/(?<=a+)b/ REJECT lookbehind of no fixed length\n"),
        ("postfix/sender_access.regexp", "/@bad[z-a]example$/ REJECT\n"),
    ],
)
def test_a_bad_pattern_is_refused(root: Path, rel: str, line: str) -> None:
    """Written into the stage: the settings refuse what they can judge, Postfix the rest."""
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    validate.compile_maps(rev, bundle)
    append(rev, bundle, rel, line)
    with pytest.raises(ValidationError, match=f"postmap {rel}: .*(warning|fatal|error)"):
        validate.compile_maps(rev, bundle)
    with pytest.raises(ValidationError, match=f"postmap {rel}"):
        validate.stage(rev, bundle, frozenset({rel}), None)


def test_an_unknown_main_cf_parameter_is_refused(root: Path) -> None:
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    validate.postfix_params(rev)
    append(rev, bundle, "postfix/main.cf", "mailctl_no_such_parameter = yes\n")
    with pytest.raises(ValidationError, match=r"postconf -n .*mailctl_no_such_parameter"):
        validate.postfix_params(rev)


def test_a_broken_master_cf_is_refused(root: Path) -> None:
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    append(rev, bundle, "postfix/master.cf", "brokenservice inet n\n")
    with pytest.raises(ValidationError, match=r"master\.cf: line \d+: bad field count"):
        validate.postfix_params(rev)


def test_a_key_that_is_not_the_certificates_is_refused(root: Path) -> None:
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    validate.tls(rev)
    _, other_key = revision.openssl_pair("other.example.com")
    rewrite(rev, bundle, "tls/key.pem", other_key)
    with pytest.raises(ValidationError, match="does not belong to the certificate"):
        validate.tls(rev)
    with pytest.raises(ValidationError, match="does not belong"):
        validate.stage(rev, bundle, frozenset({"tls/key.pem"}), None)


def test_a_certificate_that_is_not_pem_is_refused(root: Path) -> None:
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    rewrite(rev, bundle, "tls/cert.pem", b"-----BEGIN CERTIFICATE-----\nTUlJ\n")
    with pytest.raises(ValidationError, match="not valid PEM"):
        validate.tls(rev)


def test_an_unknown_imapd_conf_option_is_refused(root: Path) -> None:
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    validate.cyrus(rev)
    append(rev, bundle, "cyrus/imapd.conf", "mailctl_no_such_option: 1\n")
    with pytest.raises(ValidationError, match="mailctl_no_such_option"):
        validate.cyrus(rev)


def test_a_fetchmailrc_syntax_error_is_refused_without_its_secrets(root: Path) -> None:
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    rc = rev / "fetchmail/fetchmailrc"
    assert revision.FETCHMAIL_PASSWORD.encode() in rc.read_bytes()
    validate.fetchmail(rev)
    append(rev, bundle, "fetchmail/fetchmailrc", "poll { this is not fetchmail syntax\n")
    with pytest.raises(ValidationError, match=r"fetchmailrc refused by fetchmail: .+") as exc:
        validate.fetchmail(rev)
    assert revision.FETCHMAIL_PASSWORD not in str(exc.value)
    with pytest.raises(ValidationError, match="fetchmailrc"):
        validate.stage(rev, bundle, frozenset({"fetchmail/fetchmailrc"}), None)


def test_an_opendkim_conf_it_cannot_read_is_refused(root: Path) -> None:
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    validate.opendkim(rev)  # its staged tables, not the live ones, are opened
    append(rev, bundle, "opendkim/opendkim.conf", "MailctlNoSuchOption yes\n")
    with pytest.raises(ValidationError, match=r"line \d+: unrecognized parameter"):
        validate.opendkim(rev)
    assert not (rev / "opendkim/.check.conf").exists()  # nothing left in the revision


def test_an_opendmarc_conf_it_cannot_read_is_refused(root: Path) -> None:
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    validate.opendmarc(rev)
    append(rev, bundle, "opendmarc/opendmarc.conf", "MailctlNoSuchOption yes\n")
    with pytest.raises(ValidationError, match=r"opendmarc -n: .*line \d+: unrecognized parameter"):
        validate.opendmarc(rev)
    assert not (rev / "opendmarc/.check.conf").exists()


def test_only_what_changed_is_checked(root: Path) -> None:
    """A bad file outside `changed` is not looked at (it is the live one's, known good)."""
    bundle = bundle_for(realistic())
    rev = stage(root, bundle)
    append(rev, bundle, "cyrus/imapd.conf", "mailctl_no_such_option: 1\n")
    validate.stage(rev, bundle, frozenset({"postfix/virtual"}), None)
    with pytest.raises(ValidationError, match="mailctl_no_such_option"):
        validate.stage(rev, bundle, frozenset({"cyrus/imapd.conf"}), None)
