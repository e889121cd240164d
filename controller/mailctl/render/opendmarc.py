"""OpenDMARC: the DMARC verdict on mail from outside. Pure.

It runs after OpenDKIM (whose Authentication-Results it trusts, under our
hostname) and checks SPF itself (SPFSelfValidate), and adds its own
Authentication-Results with dmarc=pass/fail. OpenDMARC 1.4.2 has open crash
bugs on malformed ARC headers (FACTS-operations.md), so Postfix talks to it
with default_action=accept: a crash or a hang lets the message through
unevaluated, never loses or defers it, and the controller restarts it.

dmarc.policy: none only records; quarantine holds failing mail of domains
that ask for quarantine or reject in Postfix's hold queue (milter_header_checks
on OpenDMARC's own header: a PREPEND there is logged but not added, a HOLD
works), where `mailctl queue` lists and releases it; reject has OpenDMARC
refuse failing mail of p=reject domains with 550, and holds p=quarantine ones.
"""

from __future__ import annotations

from mailctl.layout import OPENDMARC_MILTER, OPENDMARC_SOCKET
from mailctl.render.bundle import HEADER, LIVE, File, text
from mailctl.render.opendkim import internal_hosts
from mailctl.settings import Settings

CONF = "opendmarc/opendmarc.conf"
HEADER_CHECKS = "postfix/milter_header_checks.pcre"
IGNORE = "opendmarc/ignore_hosts"
PUBLIC_SUFFIXES = "/usr/share/publicsuffix/public_suffix_list.dat"


# Its entry in smtpd_milters: a failure of OpenDMARC accepts the message.
MILTER = f"{{ {OPENDMARC_MILTER}, default_action=accept }}"


def conf(settings: Settings) -> str:
    host = settings.hostname
    return HEADER + "".join(
        f"{k} {v}\n"
        for k, v in (
            ("Syslog", "true"),
            ("Socket", f"local:{OPENDMARC_SOCKET}"),
            ("PidFile", "/run/opendmarc/opendmarc.pid"),
            ("UMask", "007"),
            ("UserID", "opendmarc:opendmarc"),
            ("AuthservID", host),
            ("TrustedAuthservIDs", host),
            ("IgnoreAuthenticatedClients", "true"),
            # the same internal hosts OpenDKIM signs for: not evaluated
            ("IgnoreHosts", f"{LIVE}/{IGNORE}"),
            ("SPFSelfValidate", "true"),
            ("PublicSuffixList", PUBLIC_SUFFIXES),
            ("RejectFailures", "true" if settings.dmarc.policy == "reject" else "false"),
            ("HoldQuarantinedMessages", "false"),
            ("FailureReports", "false"),
            ("RequiredHeaders", "false"),
        )
    )


def header_checks(settings: Settings) -> str:
    """The hold for dmarc.policy quarantine or reject, on OpenDMARC's header only."""
    if settings.dmarc.policy == "none":
        return HEADER
    host = settings.hostname.replace(".", r"\.")  # letters, digits, dots, dashes
    return (
        HEADER
        + rf"/^Authentication-Results: {host};\s+dmarc=fail \(p=(quarantine|reject)\b/"
        + "\n\tHOLD DMARC failure of a domain that asks for quarantine or reject\n"
    )


def active(settings: Settings) -> bool:
    """OpenDMARC runs: DMARC is on and this is no edge (the mailbox node evaluates)."""
    return settings.dmarc.enabled and not settings.is_edge


def files(settings: Settings) -> dict[str, File]:
    if not settings.dmarc.enabled:
        return {}
    return {
        CONF: text(conf(settings)),
        IGNORE: text(HEADER + "".join(f"{net}\n" for net in internal_hosts(settings))),
        HEADER_CHECKS: text(header_checks(settings)),
    }
