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
VERIFY = "mailbox-verify"  # the same without soft_bounce: for address verification probes
VERIFY_ROUTES = "edge_verify_transport"  # edge: address_verify_transport_maps
STATUS_FILTER = "edge_status_filter.pcre"  # the verify transport's smtp_delivery_status_filter
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


def nexthop(settings: Settings, transport: str = TRANSPORT) -> str:
    return f"{transport}:{login_key(settings)}"


def login_key(settings: Settings) -> str:
    """The mailbox node as smtp_sasl_password_maps looks it up: [host]:port."""
    return f"[{settings.edge.mailbox_host}]:{settings.edge.mailbox_port}"


def routes(settings: Settings, transport: str = TRANSPORT) -> str:
    hop = nexthop(settings, transport)
    domains = [*settings.domains, *settings.alias_domains]
    lines = [q.map_line(d, hop, "domains") + "\n" for d in dict.fromkeys(domains)]
    return HEADER + "".join(lines)


def verifies(settings: Settings) -> bool:
    return settings.is_edge and settings.edge.recipients == "verify"


def main_cf(settings: Settings) -> list[tuple[str, str]]:
    """Address verification against the mailbox node (edge.recipients: verify). Its
    probes go by a transport without soft_bounce, or an unknown user would be 'try
    later' for ever; a negative answer is asked again after 10 minutes, so a user
    added on the mailbox node is soon known."""
    if not verifies(settings):
        return []
    db = settings.maps.table_type
    return [
        ("address_verify_transport_maps", f"{db}:${{config_directory}}/{VERIFY_ROUTES}"),
        ("address_verify_negative_refresh_time", "10m"),
        # The mailbox node's 550 is final; Postfix's default answer to it is 450.
        ("unverified_recipient_reject_code", "550"),
    ]


def status_filter() -> str:
    """5.4.x (routing: the node's name not found while it is down, a loop) is not the
    node's answer about a recipient: try again later, never 'undeliverable'."""
    return HEADER + "/^5\\.4\\.([0-9]+)(.*)$/\t4.4.$1$2\n"


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


def verify_row(settings: Settings) -> tuple[str, ...]:
    options = (
        f"-o smtp_tls_security_level={settings.edge.tls} -o syslog_name=postfix/verify "
        f"-o smtp_delivery_status_filter=pcre:${{config_directory}}/{STATUS_FILTER}"
    )
    return (VERIFY, "unix", "-", "-", "y", "-", "-", f"smtp {options}")


def clients(settings: Settings) -> str:
    """The edges' networks; with edge.username they must log in as well."""
    action = "permit_sasl_authenticated" if settings.edge.username else "OK"
    return HEADER + "".join(f"{net}\t{action}\n" for net in settings.edges)


def port_options(settings: Settings) -> list[tuple[str, str]]:
    """The mailbox node's edge port: edges only, local recipients only, no screening."""
    login = "yes" if settings.edge.username else "no"
    return [
        ("syslog_name", "postfix/edge"),
        ("smtpd_client_restrictions", f"${CLIENT_CHECK}"),
        ("smtpd_helo_restrictions", "permit"),
        ("smtpd_sender_restrictions", "permit"),
        ("smtpd_recipient_restrictions", "reject_unauth_destination,reject_unlisted_recipient"),
        ("smtpd_data_restrictions", "reject_unauth_pipelining"),
        ("smtpd_sasl_auth_enable", login),
    ]
