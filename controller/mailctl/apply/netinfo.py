"""This container's own addresses (read from /proc). Side effects: reads /proc."""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path


def local_ipv4(fib_trie: Path = Path("/proc/net/fib_trie")) -> set[ipaddress.IPv4Address]:
    """Addresses of this network namespace's interfaces, loopback excluded."""
    try:
        lines = fib_trie.read_text().splitlines()
    except OSError:
        return set()
    out: set[ipaddress.IPv4Address] = set()
    for prev, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            addr = ipaddress.IPv4Address(prev.split()[-1])
            if not addr.is_loopback:
                out.add(addr)
    return out


def resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """The name servers resolv.conf names, as addresses (anything else is skipped)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return ()
    out: list[str] = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                out.append(str(ipaddress.ip_address(parts[1])))
            except ValueError:
                continue  # a scope-id or a typo: no address to hand on
    return tuple(dict.fromkeys(out))
