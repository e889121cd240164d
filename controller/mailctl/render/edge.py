"""Edge MX and mailbox node: how mail crosses between them. Pure.

An edge (`role: edge`) takes the mail domains as relay_domains, checks recipients
against relay_recipient_maps made from the same users and aliases as the mailbox
node's, and passes the mail to the mailbox node's edge port through its own
transport `mailbox` (smtp with TLS). The mailbox node opens that port only for the
networks in `edges`: there the edges' mail skips the checks they already made
(postscreen, greylisting, SPF), while the relay guard stays: only local recipients.
"""

from __future__ import annotations

from mailctl.render import quoting as q
from mailctl.render.bundle import HEADER
from mailctl.settings import Settings

TRANSPORT = "mailbox"  # the edge's master.cf service towards the mailbox node
RECIPIENTS = "edge_recipients"  # edge: relay_recipient_maps
ROUTES = "edge_transport"  # edge: transport_maps, before the user's own
CLIENTS = "edges.cidr"  # mailbox node: who may use the edge port
EDGE_PORT = 10025
CLIENT_CHECK = "mailctl_edge_clients"  # main.cf parameter the edge port's -o names


def relay_domains(settings: Settings) -> list[str]:
    """On an edge every domain is relayed: the mailbox node delivers."""
    return list(
        dict.fromkeys([*settings.domains, *settings.alias_domains, *settings.relay_domains])
    )


def recipients(settings: Settings) -> str:
    """Every address the mailbox node takes: users, alias addresses and catch-alls, and
    all of a relay_domains domain (its own server knows its users)."""
    keys = [u.address for u in settings.users]
    keys += list(settings.aliases)  # addresses and @domain catch-alls
    keys += [f"@{d}" for d in settings.relay_domains]
    lines = [q.map_line(k, "OK", "users/aliases") + "\n" for k in dict.fromkeys(keys)]
    return HEADER + "".join(lines)


def nexthop(settings: Settings) -> str:
    host = settings.edge.mailbox_host
    return f"{TRANSPORT}:[{host}]:{settings.edge.mailbox_port}"


def routes(settings: Settings) -> str:
    hop = nexthop(settings)
    domains = [*settings.domains, *settings.alias_domains]
    lines = [q.map_line(d, hop, "domains") + "\n" for d in dict.fromkeys(domains)]
    return HEADER + "".join(lines)


def transport_row(settings: Settings) -> tuple[str, ...]:
    """The edge's way to the mailbox node. soft_bounce: a failure there is never final.
    While the node is down, Docker's and Kubernetes' DNS answer its name with NXDOMAIN,
    which Postfix takes as permanent (5.4.4) and would bounce the mail the edge has
    accepted; this way it stays queued, until maximal_queue_lifetime (5 d) at most."""
    options = (
        f"-o smtp_tls_security_level={settings.edge.tls} -o soft_bounce=yes "
        "-o syslog_name=postfix/mailbox"
    )
    return (TRANSPORT, "unix", "-", "-", "y", "-", "-", f"smtp {options}")


def clients(settings: Settings) -> str:
    return HEADER + "".join(f"{net}\tOK\n" for net in settings.edges)


def port_options() -> list[tuple[str, str]]:
    """The mailbox node's edge port: edges only, local recipients only, no screening."""
    return [
        ("syslog_name", "postfix/edge"),
        ("smtpd_client_restrictions", f"${CLIENT_CHECK}"),
        ("smtpd_helo_restrictions", "permit"),
        ("smtpd_sender_restrictions", "permit"),
        ("smtpd_recipient_restrictions", "reject_unauth_destination,reject_unlisted_recipient"),
        ("smtpd_data_restrictions", "reject_unauth_pipelining"),
        ("smtpd_sasl_auth_enable", "no"),
    ]
