"""Cyrus IMAP: imapd.conf and cyrus.conf, written whole. Pure.

Cyrus exits when an option appears twice in imapd.conf, so the file is one
ordered mapping, rendered in full.
"""

from __future__ import annotations

from mailctl.layout import (
    CYRUS_ADMIN,
    CYRUS_ADMIN_SASLDB,
    CYRUS_ADMIN_SOCKET,
    CYRUS_CONFIGDIR,
    CYRUS_RUN,
    CYRUS_SPOOL,
    LMTP_SOCKET,
    SASLAUTHD_MUX,
    SIEVE_DIR,
)
from mailctl.render import quoting as q
from mailctl.render.bundle import HEADER, LIVE, File, text
from mailctl.settings import Settings


def imapd_options(settings: Settings) -> dict[str, str]:
    return {
        "configdirectory": CYRUS_CONFIGDIR,
        "proc_path": f"{CYRUS_RUN}/proc",
        "mboxname_lockpath": f"{CYRUS_RUN}/lock",
        "defaultpartition": "default",
        "partition-default": f"{CYRUS_SPOOL}/mail",
        "sievedir": SIEVE_DIR,
        "servername": settings.hostname,
        "virtdomains": "userid",
        "unixhierarchysep": "yes",
        "altnamespace": "no",
        "hashimapspool": "true",
        "admins": q.imapd_list([CYRUS_ADMIN, *settings.cyrus.admins], "cyrus.admins"),
        "allowanonymouslogin": "no",
        # Passwords only over TLS on the network; the admin unix socket counts as secure.
        "allowplaintext": "yes" if settings.cyrus.allow_plaintext else "no",
        "sasl_pwcheck_method": "saslauthd",
        "sasl_saslauthd_path": SASLAUTHD_MUX,
        "sasl_mech_list": q.imapd_value(
            " ".join(settings.sasl.mech_list).upper(), "sasl.mech_list"
        ),
        "tls_server_cert": f"{LIVE}/tls/cert.pem",
        "tls_server_key": f"{LIVE}/tls/key.pem",
        "tls_client_ca_dir": "/etc/ssl/certs",
        "tls_session_timeout": "1440",
        "lmtp_downcase_rcpt": "yes",
        "lmtp_over_quota_perm_failure": "yes" if settings.cyrus.over_quota_perm_failure else "no",
        "lmtpsocket": LMTP_SOCKET,
        "idlesocket": f"{CYRUS_RUN}/socket/idle",
        "notifysocket": f"{CYRUS_RUN}/socket/notify",
        "quotawarn": str(settings.cyrus.quota_warn),
        "timeout": str(settings.cyrus.timeout),
        "poptimeout": str(settings.cyrus.pop_timeout),
        # Debian's 1 refuses a second POP3 login within a minute; mail clients poll faster.
        "popminpoll": "0",
        # Refuse a message that would exceed the quota, not only once it is exceeded.
        "lmtp_strict_quota": "yes",
        "umask": "077",
        "syslog_prefix": "cyrus",
    }


def _conf(options: dict[str, str]) -> str:
    return HEADER + "".join(f"{k}: {v}\n" for k, v in options.items())


def imapd_conf(settings: Settings) -> str:
    return _conf(imapd_options(settings))


def admin_conf(settings: Settings) -> str:
    """The admin socket's imapd: a local unix socket only, so plain login is fine there.

    The admin's password is checked in a SASL database of its own (auxprop), not by
    saslauthd: whatever mechanism the users log in with, the controller gets in.
    """
    return _conf(
        {
            **imapd_options(settings),
            "allowplaintext": "yes",
            "sasl_pwcheck_method": "auxprop",
            "sasl_auxprop_plugin": "sasldb",
            "sasl_sasldb_path": CYRUS_ADMIN_SASLDB,
        }
    )


def cyrus_conf(settings: Settings) -> str:
    pop = (
        (
            '  pop3          cmd="pop3d -U 30" listen="110" prefork=0 maxchild=50\n'
            '  pop3s         cmd="pop3d -s -U 30" listen="995" prefork=0 maxchild=50\n'
        )
        if settings.cyrus.pop3
        else ""
    )
    return (
        HEADER
        + f"""START {{
  recover       cmd="/usr/sbin/cyrus ctl_cyrusdb -r"
}}
SERVICES {{
  imap          cmd="imapd -U 30" listen="143" prefork=1 maxchild=100
  imaps         cmd="imapd -s -U 30" listen="993" prefork=0 maxchild=100
{pop}  lmtpunix      cmd="lmtpd" listen="{LMTP_SOCKET}" prefork=1 maxchild=20
  admin         cmd="imapd -C {LIVE}/cyrus/imapd-admin.conf" listen="{CYRUS_ADMIN_SOCKET}" \
prefork=0 maxchild=4
}}
EVENTS {{
  checkpoint    cmd="/usr/sbin/cyrus ctl_cyrusdb -c" period=30
  delprune      cmd="/usr/sbin/cyrus expire -E 3" at=0401
  tlsprune      cmd="/usr/sbin/cyrus tls_prune" at=0401
  deleteprune   cmd="/usr/sbin/cyrus expire -E 4 -D 28" at=0430
  expungeprune  cmd="/usr/sbin/cyrus expire -E 4 -X 28" at=0445
}}
"""
    )


def files(settings: Settings) -> dict[str, File]:
    return {
        "cyrus/imapd.conf": text(imapd_conf(settings)),
        "cyrus/cyrus.conf": text(cyrus_conf(settings)),
        "cyrus/imapd-admin.conf": text(admin_conf(settings)),
    }


def mailboxes(settings: Settings) -> dict[str, int | None]:
    """Each user's mailbox and its quota in KiB (Cyrus STORAGE units)."""
    return {u.address: (u.quota_mb * 1024 if u.quota_mb else None) for u in settings.users}
