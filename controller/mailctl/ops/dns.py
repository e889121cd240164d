"""DKIM keys by hand (list, rotate, revoke) and the DNS records each domain needs.

The controller's rotator moves keys through their gates on its own (apply.dkim);
these are the operator's levers, under the same lock. A change is a change of
the inputs: the controller applies it, and these wait until it has.

Side effects: read and write the DKIM state; rotate and revoke make keys (openssl).
"""

from __future__ import annotations

import time

from mailctl.apply import dkim, inputs
from mailctl.errors import NotFound
from mailctl.layout import Layout
from mailctl.ops.models import DkimKey, DnsRecord
from mailctl.render.opendkim import signed_domains
from mailctl.settings import Settings, load_settings

RETIRED_SHOWN = 30 * 86_400  # how long `mailctl dns` reminds of a record to remove


def _settings(layout: Layout) -> Settings:
    return load_settings(layout.settings_file)


def _entry(domain: str, key: dkim.Key) -> DkimKey:
    return DkimKey(
        domain=domain,
        selector=key.selector,
        algorithm=key.algorithm,
        state=key.state,
        created=key.created,
        activated=key.activated,
        retiring_since=key.retiring_since,
        record=key.record() if key.state in dkim.PUBLISHED else "",
    )


def list_keys(layout: Layout) -> list[DkimKey]:
    state = dkim.load(layout)
    return [_entry(d, k) for d in sorted(state.domains) for k in state.keys(d)]


def _known(layout: Layout, domain: str) -> str:
    domain = domain.strip().lower()
    if domain not in signed_domains(_settings(layout)):
        raise NotFound(f"{domain} is not one of 'domains' or 'alias_domains'")
    return domain


def rotate(layout: Layout, domain: str, wait: bool = True) -> list[DkimKey]:
    """A new key of each algorithm in use (RSA, and Ed25519 with dkim.ed25519)."""
    domain = _known(layout, domain)
    algorithms = _settings(layout).dkim.algorithms()
    with dkim.locked(layout) as state:
        made = dkim.rotate(state, domain, time.time(), dkim.key_maker(layout), algorithms)
    if wait:
        inputs.wait_applied(layout)
    return [_entry(domain, key) for key in made]


def revoke(layout: Layout, domain: str, selector: str, wait: bool = True) -> str:
    domain = domain.strip().lower()
    with dkim.locked(layout) as state:
        note = dkim.revoke(state, domain, selector, time.time(), dkim.key_maker(layout))
    if wait:
        inputs.wait_applied(layout)
    return note


def records(layout: Layout) -> list[DnsRecord]:
    """Every record each domain needs, in the order a zone file lists them."""
    settings = _settings(layout)
    host = settings.hostname
    out = [
        DnsRecord(name=host, type="A", value="<this server's public IPv4>"),
        DnsRecord(
            name="<that IPv4, reversed>.in-addr.arpa",
            type="PTR",
            value=f"{host}.",
            comment="ask the provider of the address; receivers check it matches the A record",
        ),
    ]
    keys = dkim.load(layout) if settings.dkim.enabled else dkim.State()
    for domain in signed_domains(settings):
        out += [
            DnsRecord(name=domain, type="MX", value=f"10 {host}."),
            DnsRecord(
                name=domain,
                type="TXT",
                value="v=spf1 mx -all",
                comment="SPF: only this domain's MX hosts send its mail",
            ),
            DnsRecord(
                name=f"_dmarc.{domain}",
                type="TXT",
                value=f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}",
                comment="DMARC: report only, to start; p=quarantine once the reports are clean",
            ),
            DnsRecord(
                name=f"_smtp._tls.{domain}",
                type="TXT",
                value=f"v=TLSRPTv1; rua=mailto:postmaster@{domain}",
                comment="TLS-RPT: senders report failed TLS to this domain (RFC 8460)",
            ),
        ]
        out += [
            DnsRecord(name=name, type="TXT", value=text, comment=f"DKIM, {key_state}")
            for name, text, key_state in dkim.records(keys, [domain])
        ]
    for domain in keys.domains:
        for key in keys.keys(domain):
            if key.state == "retired" and time.time() - (key.retired or 0) < RETIRED_SHOWN:
                name = f"{key.selector}._domainkey.{domain}"
                out.append(DnsRecord(name=name, type="TXT", value="", comment="retired: remove it"))
    return out


def _txt(value: str) -> str:
    """A zone file's quoted strings: at most 255 characters each."""
    parts = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    quoted = " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)
    return f"( {quoted} )" if len(parts) > 1 else quoted


def zone_text(found: list[DnsRecord]) -> str:
    lines = []
    for r in found:
        if r.comment:
            lines.append(f"; {r.comment}")
        if r.type == "TXT" and not r.value:
            lines.append(f"; {r.name}.\tTXT\t(delete)")
            continue
        value = _txt(r.value) if r.type == "TXT" else r.value
        if r.value.startswith("<") or r.name.startswith("<"):
            lines.append(f"; {r.name}.\tIN\t{r.type}\t{value}")
        else:
            lines.append(f"{r.name}.\t3600\tIN\t{r.type}\t{value}")
    return "\n".join(lines) + "\n"
