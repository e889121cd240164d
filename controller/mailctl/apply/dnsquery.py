"""Asking DNS as a checker must: the domain's own name servers, and "unknown" kept apart.

A resolver's cached or broken answer must not pass for the truth: what a
domain publishes is asked of each of its authoritative servers directly.
Every failure (timeout, SERVFAIL, REFUSED, no name servers found) is an
`Answer` with `ok=False` and a reason, never an empty "nothing there".

Side effects: DNS queries (UDP, TCP when truncated), via /etc/resolv.conf for
the name servers' names and addresses.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

TIMEOUT = 3.0


@dataclass(frozen=True)
class Answer:
    ok: bool  # the server answered NOERROR or NXDOMAIN
    texts: tuple[str, ...] = ()  # TXT strings joined per record
    ttl: int = 0
    reason: str = ""


def _resolver(timeout: float) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver()
    r.lifetime = timeout
    r.timeout = timeout
    return r


def name_servers(domain: str, timeout: float = TIMEOUT) -> list[str]:
    """Addresses of the name servers of the zone that holds `domain` (walking up).

    dns.exception.DNSException when the resolver does not answer (timeout, SERVFAIL)."""
    resolver = _resolver(timeout)
    name = dns.name.from_text(domain)
    while len(name.labels) > 1:
        try:
            hosts = [str(r.target) for r in resolver.resolve(name, "NS")]
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            name = name.parent()
            continue
        addresses: list[str] = []
        for host in sorted(hosts):
            try:
                addresses += [r.to_text() for r in resolver.resolve(host, "A")]
            except dns.exception.DNSException:
                continue
        return sorted(set(addresses))
    return []


def txt_at(server: str, name: str, timeout: float = TIMEOUT) -> Answer:
    """The TXT records of `name` as `server` answers them, without a cache between."""
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    try:
        reply = dns.query.udp(query, server, timeout=timeout)
        if reply.flags & dns.flags.TC:
            reply = dns.query.tcp(query, server, timeout=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        return Answer(False, reason=f"{server}: {exc.__class__.__name__}")
    rcode = reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Answer(True, reason=f"{server}: NXDOMAIN")
    if rcode != dns.rcode.NOERROR:
        return Answer(False, reason=f"{server}: {dns.rcode.to_text(rcode)}")
    texts: list[str] = []
    ttl = 0
    for rrset in reply.answer:
        if rrset.rdtype != dns.rdatatype.TXT:
            continue
        ttl = max(ttl, rrset.ttl)
        for rdata in rrset:
            texts.append(b"".join(rdata.strings).decode("utf-8", "replace"))
    return Answer(True, tuple(texts), ttl)


def tags(record: str) -> dict[str, str]:
    """A DKIM-style tag list (`v=DKIM1; k=rsa; p=...`), whitespace removed from values."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        if "=" in part:
            k, _, v = part.partition("=")
            out[k.strip()] = "".join(v.split())
    return out


def published(domain: str, name: str, public: str, timeout: float = TIMEOUT) -> dict[str, object]:
    """Does every name server of `domain` serve TXT `name` with p=`public`, and its TTL?

    matches: True (all do), False (one does not), None (one did not answer: no
    evidence either way)."""
    try:
        servers = name_servers(domain, timeout)
    except dns.exception.DNSException as exc:
        why = f"name servers of {domain}: {exc.__class__.__name__}"
        return {"matches": None, "ttl": 0, "detail": why}
    if not servers:
        return {"matches": None, "ttl": 0, "detail": f"no name servers found for {domain}"}
    ttl = 0
    for server in servers:
        answer = txt_at(server, name, timeout)
        if not answer.ok:
            return {"matches": None, "ttl": 0, "detail": answer.reason}
        if not any(tags(t).get("p") == public for t in answer.texts):
            return {
                "matches": False,
                "ttl": 0,
                "detail": f"{server} does not publish {name} as ours",
            }
        ttl = max(ttl, answer.ttl)
    return {"matches": True, "ttl": ttl, "detail": f"published on {', '.join(servers)}"}


def main(argv: list[str] | None = None) -> int:
    """`python -m mailctl.apply.dnsquery DOMAIN NAME TIMEOUT`, the public key on stdin:
    one JSON object (apply.dkim.observe runs this, keeping dnspython out of the
    resident controller)."""
    domain, name, timeout = argv if argv is not None else sys.argv[1:]
    print(json.dumps(published(domain, name, sys.stdin.read().strip(), float(timeout))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
