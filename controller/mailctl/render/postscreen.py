"""postscreen(8) on port 25, and the PROXY-protocol ports. Pure.

postscreen answers port 25 and passes clients that pass its tests to smtpd (the
`smtpd` pass service); submission (587, 465) keeps its own smtpd. The trusted
clients skip every test: loopback and `networks` (permit_mynetworks), and the
networks that `rbl.whitelist` and `access.clients` let through.

Blocklists move from smtpd to postscreen, with weights, when every allow-list entry
of rbl.whitelist is an address or network: postscreen sees only the client's IP, so a
host name there could not be honoured before the blocklist refused the client. With
such a name the lists stay in smtpd (reject_rbl_client), where names are known.

The PROXY ports are extra listeners (12525 for port-25 traffic, 10587 and 10465 for
submission) that take haproxy's header, v1 or v2. Postfix ignores
smtpd_upstream_proxy_protocol behind postscreen, so port-25 traffic from the
balancer gets a postscreen of its own with postscreen_upstream_proxy_protocol. Both
postscreens share one cache through proxymap (proxy_write_maps lists
$postscreen_cache_map by default).
"""

from __future__ import annotations

import ipaddress

from mailctl.render.bundle import HEADER
from mailctl.settings import Settings

PROXY_SMTP = 12525
PROXY_SUBMISSION = 10587
PROXY_SMTPS = 10465
ACCESS = "postfix/postscreen_access.cidr"
ACCESS_REF = "cidr:${config_directory}/postscreen_access.cidr"
CACHE = "proxy:btree:$data_directory/postscreen_cache"
# A listing is 127.0.0.2 and up (RFC 5782). Answers like 127.255.255.254 are a list's
# errors ("your resolver is refused"): counting them would refuse every client.
LISTED = "127.0.0.[2..255]"


def _network(key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(key, strict=False)
    except ValueError:
        return None


def lets_through(action: str) -> bool:
    return action.split()[0].upper() in ("OK", "PERMIT")


def allowed(settings: Settings) -> list[str]:
    """The networks that skip postscreen's tests, besides mynetworks."""
    keys = [*settings.rbl.whitelist]
    keys += [k for k, v in settings.access.clients.items() if lets_through(v)]
    nets = [_network(k) for k in keys]
    return list(dict.fromkeys(str(n) for n in nets if n is not None))


def dnsbl(settings: Settings) -> bool:
    """True when postscreen asks the blocklists instead of smtpd."""
    return (
        settings.postscreen.enabled
        and bool(settings.rbl.lists)
        and all(_network(k) is not None for k in settings.rbl.whitelist)
    )


def access_table(settings: Settings) -> str:
    return HEADER + "".join(f"{net}\tpermit\n" for net in allowed(settings))


def main_cf(settings: Settings) -> list[tuple[str, str]]:
    ps = settings.postscreen
    if not ps.enabled:
        return []
    deep = "yes" if ps.protocol_tests else "no"
    sites = [f"{z}={LISTED}*{ps.dnsbl_weights.get(z, 1)}" for z in settings.rbl.lists]
    on = dnsbl(settings)
    return [
        ("postscreen_access_list", f"permit_mynetworks, {ACCESS_REF}"),
        ("postscreen_cache_map", CACHE),
        ("postscreen_greet_wait", f"{ps.greet_wait}s"),
        ("postscreen_greet_action", "enforce"),
        ("postscreen_dnsbl_sites", ", ".join(sites) if on else ""),
        ("postscreen_dnsbl_threshold", str(ps.dnsbl_threshold)),
        ("postscreen_dnsbl_action", "enforce"),
        ("postscreen_pipelining_enable", deep),
        ("postscreen_pipelining_action", "enforce"),
        ("postscreen_non_smtp_command_enable", deep),
        ("postscreen_non_smtp_command_action", "drop"),
        ("postscreen_bare_newline_enable", deep),
        ("postscreen_bare_newline_action", "enforce"),
    ]


PROXY_OPTION = "smtpd_upstream_proxy_protocol=haproxy"


def port25_rows(settings: Settings, smtpd: str) -> list[tuple[str, ...]]:
    """master.cf rows for port 25 (and 12525): `smtpd` is its command with options."""
    proxy = settings.proxy_protocol.smtp
    if not settings.postscreen.enabled:
        rows: list[tuple[str, ...]] = [("smtp", "inet", "n", "-", "y", "-", "-", smtpd)]
        if proxy:
            rows.append(
                (str(PROXY_SMTP), "inet", "n", "-", "y", "-", "-", f"{smtpd} -o {PROXY_OPTION}")
            )
        return rows
    rows = [
        ("smtp", "inet", "n", "-", "y", "-", "1", "postscreen"),
        ("smtpd", "pass", "-", "-", "y", "-", "-", smtpd),
        ("dnsblog", "unix", "-", "-", "y", "-", "0", "dnsblog"),
        ("tlsproxy", "unix", "-", "-", "y", "-", "0", "tlsproxy"),
    ]
    if proxy:
        listener = "postscreen -o postscreen_upstream_proxy_protocol=haproxy"
        rows.append((str(PROXY_SMTP), "inet", "n", "-", "y", "-", "1", listener))
    return rows


def submission_ports(settings: Settings) -> list[tuple[str, str]]:
    """(listener, the plain service it copies) for the submission PROXY ports."""
    if not settings.proxy_protocol.submission:
        return []
    return [(str(PROXY_SUBMISSION), "submission"), (str(PROXY_SMTPS), "smtps")]
