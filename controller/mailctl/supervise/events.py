"""What the controller reads out of the daemons' log lines (pure functions).

Postfix logs through postlogd to stdout, which the supervisor pumps; these
parse single lines of it. A line they do not know is none of their business.
"""

from __future__ import annotations

import re

# postfix/lmtp[123]: 4F3A21C0A2: to=<a@b>, relay=..., dsn=4.4.2, status=deferred (lost ...)
_LMTP_DEFERRED = re.compile(
    r"\bpostfix/lmtp\[\d+\]: (?P<id>[0-9A-Za-z]+): to=<.*, status=deferred \((?P<why>.*)\)$"
)


def lmtp_connection_lost(line: str) -> str | None:
    """The queue ID of a message whose LMTP delivery failed because lmtpd went away.

    A deferral that lmtpd answered ("... said: 452 4.2.2 Over quota") is Postfix's
    to retry on its own schedule; a lost or refused connection is not about the
    message, and the controller asks for it again once Cyrus answers."""
    m = _LMTP_DEFERRED.search(line)
    if m is None or " said: " in m.group("why"):
        return None
    return m.group("id")


# cyrus/master: too many failures for service lmtpunix/unix, disabling until next SIGHUP
_CYRUS_DISABLED = re.compile(r"too many failures for service (?P<service>\S+), disabling")


def cyrus_service_disabled(name: str, line: str) -> str | None:
    """The Cyrus service cyrmaster has just switched off until its next SIGHUP.

    After five deaths of a service's process in its READY state within ten seconds
    (lmtpd killed by the OOM killer, say), cyrmaster stops serving it while itself
    running on: mail for the mailboxes waits until someone sends SIGHUP."""
    if name != "cyrus/master":
        return None
    m = _CYRUS_DISABLED.search(line)
    return m.group("service") if m else None
