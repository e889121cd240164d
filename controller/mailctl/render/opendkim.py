"""OpenDKIM: signs mail of logged-in users and trusted networks, verifies the rest. Pure.

One instance behind every smtpd. It signs what arrives on submission/smtps
(Postfix sets the milter macro daemon_name=ORIGINATING there) or from
InternalHosts (loopback and `networks`), with the active key of the sender's
domain; it verifies what comes from outside and adds Authentication-Results
with our hostname as the authserv-id, removing any that claim it already.
SIGUSR1 makes it re-read the tables: a key rotation needs no restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailctl.layout import OPENDKIM_DIR, OPENDKIM_MILTER, OPENDKIM_SOCKET
from mailctl.render.bundle import HEADER, LIVE, File, text
from mailctl.render.facts import Facts
from mailctl.settings import Settings

CONF = "opendkim/opendkim.conf"
# dkim.ed25519: a second instance adds an Ed25519 signature (RFC 8463) after the RSA
# one: OpenDKIM's SignatureAlgorithm is one per instance. It signs only.
ED25519_CONF = "opendkim/ed25519.conf"
ED25519_SOCKET = f"{OPENDKIM_DIR}/ed25519.sock"
ED25519_MILTER = "unix:opendkim/ed25519.sock"


@dataclass(frozen=True)
class SigningKey:
    """An active key: the selector to sign the domain's mail with, and its private key."""

    domain: str
    selector: str
    key_path: str  # on the state volume, 0600, owned by opendkim
    algorithm: str = "rsa"  # or "ed25519": signed by the second instance (ED25519_CONF)


def active(settings: Settings) -> bool:
    """OpenDKIM runs: DKIM is on and this is no edge (an edge only passes mail in; the
    mailbox node verifies it, and signs what leaves)."""
    return settings.dkim.enabled and not settings.is_edge


def signers(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(daemon, config file, socket, Postfix's milter address) of each running signer:
    RSA, then Ed25519 with dkim.ed25519."""
    if not active(settings):
        return []
    rsa = ("opendkim", CONF, OPENDKIM_SOCKET, OPENDKIM_MILTER)
    ed = ("opendkim-ed25519", ED25519_CONF, ED25519_SOCKET, ED25519_MILTER)
    return [rsa, *([ed] if settings.dkim.ed25519 else [])]


def signed_domains(settings: Settings) -> list[str]:
    """Every domain whose mail this server sends: mailboxes' and aliases'. None on an
    edge: it only passes mail in; the mailbox node signs what leaves."""
    if settings.is_edge:
        return []
    return list(dict.fromkeys([*settings.domains, *settings.alias_domains]))


# What both signers share: logging, canonicalization, who they sign for, and that a
# failure to sign is a tempfail (never unsigned mail sent silently).
_SIGNER: tuple[tuple[str, str], ...] = (
    ("Syslog", "yes"),
    ("SyslogSuccess", "yes"),
    ("UMask", "007"),
    ("Canonicalization", "relaxed/simple"),
    ("OversignHeaders", "From"),
    ("UserID", "opendkim:opendkim"),
    ("InternalHosts", f"file:{LIVE}/opendkim/internal_hosts"),
    # submission and smtps: Postfix's milter_macro_daemon_name=ORIGINATING
    ("MacroList", "daemon_name=ORIGINATING"),
    ("RequireSafeKeys", "yes"),
    ("On-InternalError", "tempfail"),
    ("On-SignatureError", "tempfail"),
    ("On-KeyNotFound", "accept"),
)


def _conf(pairs: tuple[tuple[str, str], ...]) -> str:
    return HEADER + "".join(f"{k} {v}\n" for k, v in pairs)


def conf(settings: Settings, facts: Facts) -> str:
    """The RSA signer, which also verifies mail from outside."""
    host = settings.hostname  # a validated host name: letters, digits, dots and dashes
    # libunbound: forward to the container's name servers (addresses, checked when read);
    # none known: it recurses from the root itself.
    servers = (("Nameservers", ",".join(facts.resolvers)),) if facts.resolvers else ()
    return _conf(
        (
            *_SIGNER,
            ("Mode", "sv"),
            ("Socket", f"local:{OPENDKIM_SOCKET}"),
            ("PidFile", "/run/opendkim/opendkim.pid"),
            ("ExternalIgnoreList", f"file:{LIVE}/opendkim/internal_hosts"),
            ("KeyTable", f"file:{LIVE}/opendkim/key_table"),
            ("SigningTable", f"refile:{LIVE}/opendkim/signing_table"),
            ("AuthservID", host),
            # dkim=none too: a verdict on every message from outside, not only signed ones
            ("AlwaysAddARHeader", "yes"),
            # Authentication-Results that claim to be ours, from outside, are forged.
            ("RemoveARFrom", host),
            ("On-DNSError", "accept"),
            ("On-NoSignature", "accept"),
            ("On-BadSignature", "accept"),
            ("On-Security", "accept"),
            *servers,
        )
    )


def ed25519_conf() -> str:
    """The second signer (dkim.ed25519): signs only."""
    return _conf(
        (
            *_SIGNER,
            ("Mode", "s"),
            ("SignatureAlgorithm", "ed25519-sha256"),
            ("Socket", f"local:{ED25519_SOCKET}"),
            ("PidFile", "/run/opendkim/ed25519.pid"),
            ("KeyTable", f"file:{LIVE}/opendkim/ed25519_key_table"),
            ("SigningTable", f"refile:{LIVE}/opendkim/ed25519_signing_table"),
        )
    )


def _tables(keys: list[SigningKey]) -> tuple[str, str]:
    key_table = "".join(
        f"{k.selector}._domainkey.{k.domain} {k.domain}:{k.selector}:{k.key_path}\n" for k in keys
    )
    # Exact per-domain entries: a foreign From domain matches none and is not signed.
    signing_table = "".join(f"*@{k.domain} {k.selector}._domainkey.{k.domain}\n" for k in keys)
    return HEADER + key_table, HEADER + signing_table


def internal_hosts(settings: Settings) -> list[str]:
    """Loopback and `networks`: signed, not verified (OpenDMARC ignores them too)."""
    return list(dict.fromkeys(["127.0.0.0/8", "::1/128", *(str(n) for n in settings.networks)]))


def files(
    settings: Settings, keys: tuple[SigningKey, ...], facts: Facts | None = None
) -> dict[str, File]:
    if not settings.dkim.enabled:
        return {}
    wanted = set(signed_domains(settings))
    active = [k for k in keys if k.domain in wanted]
    key_table, signing_table = _tables([k for k in active if k.algorithm == "rsa"])
    internal = "".join(f"{net}\n" for net in internal_hosts(settings))
    out = {
        CONF: text(conf(settings, facts or Facts())),
        "opendkim/key_table": text(key_table),
        "opendkim/signing_table": text(signing_table),
        "opendkim/internal_hosts": text(HEADER + internal),
    }
    if settings.dkim.ed25519:
        ed_keys, ed_signing = _tables([k for k in active if k.algorithm == "ed25519"])
        out[ED25519_CONF] = text(ed25519_conf())
        out["opendkim/ed25519_key_table"] = text(ed_keys)
        out["opendkim/ed25519_signing_table"] = text(ed_signing)
    return out
