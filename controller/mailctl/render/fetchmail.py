"""fetchmail: the fetchmailrc and how to run it (FEATURES F1-F3). Pure.

Every string is written by quoting.fetchmail_string (\\xHH for anything
outside a small safe set): a quote in a password cannot end the string and
smuggle in a `preconnect` command.
"""

from __future__ import annotations

from mailctl.errors import RenderError
from mailctl.layout import FETCHMAIL_RUN, FETCHMAIL_STATE
from mailctl.render import quoting as q
from mailctl.render.bundle import HEADER, LIVE, File
from mailctl.render.secrets import Secrets
from mailctl.settings import Settings

RC = "fetchmail/fetchmailrc"
IDFILE = f"{FETCHMAIL_STATE}/fetchids"


def fetchmailrc(settings: Settings, secrets: Secrets) -> str:
    f = settings.fetchmail
    lines = [
        HEADER,
        f"set daemon {f.interval}\n",
        "set no bouncemail\n",
        'set postmaster "postmaster"\n',
    ]
    for i, acc in enumerate(f.accounts):
        where = f"fetchmail.accounts.{i}"
        if i not in secrets.fetchmail_passwords:
            raise RenderError(f"{where}.password_file: no password was read")
        port = f" port {acc.port}" if acc.port else ""
        lines.append(
            f"poll {q.fetchmail_string(acc.server, where + '.server')} proto {acc.protocol}{port}\n"
        )
        lines.append(f"  user {q.fetchmail_string(acc.user, where + '.user')}\n")
        lines.append(
            f"  password {q.fetchmail_string(secrets.fetchmail_passwords[i], where, secret=True)}\n"
        )
        to = q.fetchmail_string(acc.deliver_to, where + ".deliver_to")
        lines.append(f'  is {to} here\n  smtpname {to}\n  smtphost "127.0.0.1/25"\n')
        lines.append(f"  {'ssl' if acc.ssl else 'no ssl'}\n")
        lines.append(f"  {'sslcertck' if acc.verify_certificate else 'no sslcertck'}\n")
        lines.append(f"  {'keep' if acc.keep else 'no keep'}\n")
    return "".join(lines)


def files(settings: Settings, secrets: Secrets) -> dict[str, File]:
    if not settings.fetchmail.accounts:
        return {}
    # fetchmail refuses a run control file others can read (exit 6).
    return {RC: File(fetchmailrc(settings, secrets).encode(), 0o600, "fetchmail", "nogroup")}


def argv(settings: Settings) -> tuple[str, ...]:
    return (
        "/usr/sbin/runuser",
        "-u",
        "fetchmail",
        "--",
        "/usr/bin/fetchmail",
        "-f",
        f"{LIVE}/{RC}",
        "--nodetach",
        "--nosyslog",
        "-i",
        IDFILE,
        "--pidfile",
        f"{FETCHMAIL_RUN}/fetchmail.pid",
        "-d",
        str(settings.fetchmail.interval),
    )
