"""What the controller found out about this container at run time: a render input. Pure.

Kept apart from the settings (which hold only what the user wrote) and from
the secrets; `check` refuses settings that these facts make dangerous.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailctl.errors import SettingsError
from mailctl.settings import Settings


@dataclass(frozen=True)
class Facts:
    own_ipv4: frozenset[ipaddress.IPv4Address] = frozenset()
    # The container's name servers (resolv.conf): daemons with a resolver of their own
    # (OpenDKIM's libunbound) are pointed at them instead of recursing from the root.
    resolvers: tuple[str, ...] = ()


def check(settings: Settings, facts: Facts) -> None:
    """Never trust our own Docker network: clients on a published port arrive from it."""
    for i, net in enumerate(settings.networks):
        inside = sorted(str(a) for a in facts.own_ipv4 if net.version == 4 and a in net)
        if inside:
            raise SettingsError(
                f"networks.{i}: {net} contains this container's own address {inside[0]}; "
                "clients on a published port arrive from that network through Docker's "
                "proxy, so trusting it would make this server an open relay"
            )


def own_helo(settings: Settings, facts: Facts) -> dict[str, str]:
    """helo_access entries refusing a HELO that claims one of our own addresses (P8)."""
    if not settings.access.reject_own_helo:
        return {}
    text = "REJECT do not use my address as HELO"
    return {k: text for ip in sorted(facts.own_ipv4) for k in (str(ip), f"[{ip}]")}
