"""postsrsd: SRS for mail forwarded to other domains. Pure.

Postfix asks postsrsd through two tcp tables: sender_canonical_maps rewrites
the envelope sender of mail from other domains to SRS0=...@<first domain>,
recipient_canonical_maps turns a bounce to such an address back into the
original sender. Our own domains are never rewritten (-X). It runs only while
some alias forwards to a domain outside this server: otherwise it would only
change the Return-Path of mail from outside.
"""

from __future__ import annotations

from mailctl.layout import SRS_KEY_FILE
from mailctl.render.bundle import DaemonSpec, Probe, Reload
from mailctl.settings import Settings

FORWARD = "tcp:127.0.0.1:10001"
REVERSE = "tcp:127.0.0.1:10002"
CHROOT = "/var/lib/postsrsd"


def outside_targets(settings: Settings) -> list[str]:
    """Alias targets in domains this server does not deliver itself."""
    ours = {*settings.domains, *settings.alias_domains, *settings.local_names}
    return [
        t
        for targets in settings.alias_targets().values()
        for t in targets
        if "@" in t and t.rsplit("@", 1)[1].lower() not in ours
    ]


def active(settings: Settings) -> bool:
    if settings.is_edge:  # aliases are expanded on the mailbox node, and forwarded there
        return False
    return settings.srs.enabled and bool(settings.domains) and bool(outside_targets(settings))


def daemon(settings: Settings) -> DaemonSpec:
    domain = settings.domains[0]
    excluded = [d for d in (*settings.domains, *settings.alias_domains) if d != domain]
    argv = [
        "/usr/sbin/postsrsd",
        f"-s{SRS_KEY_FILE}",
        f"-d{domain}",
        "-l127.0.0.1",
        "-4",
        "-f10001",
        "-r10002",
        "-upostsrsd",
        f"-c{CHROOT}",
        *(f"-X{d}" for d in excluded),
    ]
    return DaemonSpec(
        name="postsrsd",
        argv=tuple(argv),
        reads=(),
        reload=Reload("restart"),  # it reads nothing but its argv and the secret
        probes=(Probe("tcp", "127.0.0.1:10001"), Probe("tcp", "127.0.0.1:10002")),
    )
