"""Pure renderers: Settings (+ resolved secrets) -> one revision's files and daemons.

No I/O, no env, no clock: render twice, get the same bytes.
"""

from __future__ import annotations

import signal

from mailctl.layout import LMTP_SOCKET, OPENDMARC_SOCKET, SASLAUTHD_MUX
from mailctl.render import (
    authres,
    cyrus,
    fetchmail,
    opendkim,
    opendmarc,
    postfix,
    postgrey,
    sasl,
    spf,
    srs,
)
from mailctl.render.bundle import LIVE, Bundle, DaemonSpec, File, Probe, Reload
from mailctl.render.facts import Facts
from mailctl.render.opendkim import SigningKey
from mailctl.render.secrets import Secrets
from mailctl.settings import Settings

__all__ = ["Bundle", "DaemonSpec", "Facts", "File", "Secrets", "SigningKey", "render"]


def daemons(settings: Settings) -> tuple[DaemonSpec, ...]:
    """What runs. An edge runs Postfix and postgrey only: no mailboxes, no logins, and
    the milters are the mailbox node's."""
    specs = (
        []
        if settings.is_edge
        else [
            DaemonSpec(
                name="saslauthd",
                argv=sasl.argv(settings),
                reads=(sasl.SASLAUTHD_CONF,),  # PAM, sasldb and shadow are read per login
                reload=Reload("restart"),
                probes=(Probe("unix", SASLAUTHD_MUX),),
            ),
            DaemonSpec(
                name="cyrus",
                argv=("/usr/sbin/cyrmaster", "-l", "64"),
                # imapd.conf is read when a process starts; preforked ones (lmtpd) would keep
                # the old one, and SIGHUP makes cyrmaster replace them.
                reads=("cyrus/",),
                reload=Reload("signal", signal=signal.SIGHUP),
                probes=(
                    Probe("tcp", "127.0.0.1:143"),
                    Probe("tcp", "127.0.0.1:993"),
                    Probe("unix", LMTP_SOCKET),
                ),
                before=("saslauthd",),
            ),
        ]
    )
    if settings.greylisting.enabled:
        specs.append(
            DaemonSpec(
                name="postgrey",
                argv=postgrey.argv(settings),
                reads=("postgrey/",),
                reload=Reload("restart"),
                probes=(Probe("tcp", "127.0.0.1:10023"),),
            )
        )
    specs += [
        DaemonSpec(
            name=name,
            argv=("/usr/sbin/opendkim", "-f", "-x", f"{LIVE}/{conf}"),
            reads=("opendkim/",),
            # SIGUSR1: re-read the configuration and the key and signing tables.
            reload=Reload("signal", signal=signal.SIGUSR1),
            probes=(Probe("unix", socket),),
        )
        for name, conf, socket, _ in opendkim.signers(settings)
    ]
    if opendmarc.active(settings):
        specs.append(
            DaemonSpec(
                name="opendmarc",
                argv=("/usr/sbin/opendmarc", "-f", "-c", f"{LIVE}/{opendmarc.CONF}"),
                reads=("opendmarc/",),
                reload=Reload("restart"),
                probes=(Probe("unix", OPENDMARC_SOCKET),),
            )
        )
    if authres.active(settings):
        specs.append(authres.daemon(settings))
    if srs.active(settings):
        specs.append(srs.daemon(settings))
    specs.append(
        DaemonSpec(
            name="postfix",
            # master itself, as `postfix start-fg` runs it when not PID 1: supervising
            # the wrapper shell would orphan master if the shell were killed.
            # The checks `postfix start` would make are done at every apply.
            argv=("/usr/lib/postfix/sbin/master", "-s"),
            reads=("postfix/", "tls/"),
            reload=Reload("signal", signal=signal.SIGHUP),
            probes=tuple(
                Probe("tcp", f"127.0.0.1:{p}")
                for p in ((25,) if settings.is_edge else (25, 465, 587))
            ),
            before=tuple(s.name for s in specs),
        )
    )
    if settings.fetchmail.accounts and not settings.is_edge:
        specs.append(
            DaemonSpec(
                name="fetchmail",
                argv=fetchmail.argv(settings),
                reads=("fetchmail/",),
                # fetchmail re-reads its rc file only if it looks newer than its start,
                # and revisions are backdated: restart it instead.
                reload=Reload("restart"),
                before=("postfix",),
            )
        )
    return tuple(specs)


def render(
    settings: Settings,
    secrets: Secrets,
    facts: Facts | None = None,
    dkim: tuple[SigningKey, ...] = (),
) -> Bundle:
    """The whole revision for these inputs: what the user wrote, the secrets it points
    to, what the controller found out about this container, and the active DKIM keys."""
    files: dict[str, File] = {}
    files.update(postfix.files(settings, facts))
    files.update(postfix.relay_passwords(settings, secrets))
    files.update(cyrus.files(settings))
    files.update(sasl.files(settings, secrets))
    files.update(postgrey.files(settings))
    files.update(fetchmail.files(settings, secrets))
    files.update(opendkim.files(settings, dkim, facts))
    files.update(spf.files(settings))
    files.update(opendmarc.files(settings))
    files["tls/cert.pem"] = File(secrets.tls_cert, 0o644)
    files["tls/key.pem"] = File(secrets.tls_key, 0o640, "root", "ssl-cert")
    return Bundle(
        files=files,
        daemons=daemons(settings),
        postmap=postfix.postmap_paths(settings),
        postalias=postfix.ALIASES,
        db_type=settings.maps.table_type,
        mailboxes={} if settings.is_edge else cyrus.mailboxes(settings),
    )
