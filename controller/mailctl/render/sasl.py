"""saslauthd, PAM and saslauthd.conf: how Postfix and Cyrus check a login. Pure.

One saslauthd serves both (FEATURES S1-S3). Its mechanism decides where the
passwords live: pam (the users' crypt hashes, pam_pwdfile), sasldb (the SASL
database on the users volume), shadow (system accounts made for the users),
rimap (another IMAP server) or ldap (saslauthd.conf). The Cyrus admin that
the controller uses never goes through saslauthd (see cyrus.admin_conf), so
no mechanism can lock the controller out of its own mailboxes.
"""

from __future__ import annotations

from mailctl.errors import RenderError
from mailctl.layout import SASLAUTHD_DIR
from mailctl.render import quoting as q
from mailctl.render.bundle import HEADER, LIVE, File, text
from mailctl.render.secrets import Secrets
from mailctl.settings import Settings
from mailctl.settings.mechanisms import mechanism

SASLAUTHD_CONF = "sasl/saslauthd.conf"


def pwdfile(entries: dict[str, str]) -> str:
    """`user:hash` lines, as pam_pwdfile reads them (and the CLI's user store is kept)."""
    lines = []
    for user, hashed in entries.items():
        if ":" in user + hashed or any(
            ord(c) < 32 or c == "\x7f" or 0xD800 <= ord(c) <= 0xDFFF for c in user + hashed
        ):
            raise RenderError(
                f"users: the entry for {user!r} cannot be written to the user database"
            )
        lines.append(f"{user}:{hashed}\n")
    return "".join(lines)


def pam_service() -> str:
    return (
        HEADER + f"auth sufficient pam_pwdfile.so pwdfile={LIVE}/sasl/users\n"
        "auth required pam_deny.so\naccount required pam_permit.so\n"
    )


def saslauthd_conf(settings: Settings, secrets: Secrets) -> str:
    """saslauthd.conf for the ldap mechanism (empty otherwise)."""
    if mechanism(settings.sasl.mechanism).server != "ldap":
        return HEADER
    ldap = settings.sasl.ldap
    base = ldap.search_base or ""
    opts = [
        ("ldap_servers", " ".join(q.saslauthd_value(s, "sasl.ldap.servers") for s in ldap.servers)),
        ("ldap_search_base", q.saslauthd_value(base, "sasl.ldap.search_base")),
        ("ldap_filter", q.saslauthd_value(ldap.filter, "sasl.ldap.filter")),
        ("ldap_start_tls", "yes" if ldap.start_tls else "no"),
        ("ldap_timeout", "10"),
    ]
    if ldap.bind_dn:
        opts += [
            ("ldap_bind_dn", q.saslauthd_value(ldap.bind_dn, "sasl.ldap.bind_dn")),
            (
                "ldap_password",
                q.saslauthd_value(
                    secrets.ldap_bind_password, "sasl.ldap.bind_password_file", secret=True
                ),
            ),
        ]
    return HEADER + "".join(f"{k}: {v}\n" for k, v in opts)


def files(settings: Settings, secrets: Secrets) -> dict[str, File]:
    users: dict[str, str] = {}
    if mechanism(settings.sasl.mechanism).store == "pwdfile":
        missing = [u.address for u in settings.users if u.address not in secrets.user_hashes]
        if missing:
            raise RenderError(f"users: no password for {', '.join(missing)}")
        users = {u.address: secrets.user_hashes[u.address] for u in settings.users}
    return {
        "sasl/users": File(pwdfile(users).encode(), 0o600),
        SASLAUTHD_CONF: File(saslauthd_conf(settings, secrets).encode(), 0o600),
        **{f"pam/{service}": text(pam_service()) for service in ("smtp", "imap", "pop", "sieve")},
    }


def argv(settings: Settings) -> tuple[str, ...]:
    mech = mechanism(settings.sasl.mechanism)
    realm = ("-r",) if mech.whole_login else ()
    option: tuple[str, ...] = ()
    if mech.server == "rimap_server":
        host, _, port = (settings.sasl.rimap_server or "").partition(":")
        option = ("-O", f"{host}/{port or 'imap'}")
    elif mech.server == "ldap":
        option = ("-O", f"{LIVE}/{SASLAUTHD_CONF}")
    return (
        "/usr/sbin/saslauthd",
        "-d",
        "-a",
        mech.name,
        *realm,
        *option,
        "-n",
        "0",
        "-m",
        SASLAUTHD_DIR,
    )
