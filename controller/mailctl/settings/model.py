"""The settings model: one tree, grouped per concern, unknown keys refused.

Pure data and validation, no I/O. Every field says its unit and why its
default is what it is. Names that reach daemon configs are checked by
`settings.names`; free text is checked again by each file's escaper.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mailctl.settings import names
from mailctl.settings.base import FilePath, Group
from mailctl.settings.fetchmail import Fetchmail
from mailctl.settings.maps import Access, Maps
from mailctl.settings.mechanisms import mechanism
from mailctl.settings.restrictions import Rbl, Restrictions

Domain = Annotated[str, AfterValidator(names.domain)]
Hostname = Annotated[str, AfterValidator(names.hostname)]
Address = Annotated[str, AfterValidator(names.address)]
AliasKey = Annotated[str, AfterValidator(names.address_or_catchall)]
CryptHash = Annotated[str, AfterValidator(names.crypt_hash)]
LdapUrl = Annotated[str, AfterValidator(names.ldap_url)]
RimapServer = Annotated[str, AfterValidator(names.host_port)]
ConfValue = Annotated[str, AfterValidator(names.one_line)]
NextHop = Annotated[str, AfterValidator(names.next_hop)]
SenderKey = Annotated[str, AfterValidator(names.address_or_catchall)]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A trusted network this wide is an open relay in all but name.
MIN_PREFIX = {4: 8, 6: 32}


class User(Group):
    """A mailbox user: can log in (SMTP AUTH, IMAP, POP3) and receives mail."""

    address: Address = Field(description="Login name and mail address, e.g. alice@example.com.")
    password_hash: CryptHash | None = Field(
        default=None,
        description="crypt(3) hash ($6$, $y$, $2b$ ...). Never the clear text.",
        repr=False,
    )
    password_file: FilePath | None = Field(
        default=None,
        description="File holding the clear-text password (a Docker/Kubernetes secret).",
    )
    quota_mb: int | None = Field(
        default=None,
        ge=1,
        le=16 * 1024 * 1024,
        description="Mailbox quota in MiB; unset means no quota.",
    )

    @model_validator(mode="after")
    def _one_password(self) -> User:
        if self.password_hash is not None and self.password_file is not None:
            raise ValueError("give only one of password_hash or password_file")
        return self


class Smtp(Group):
    """Core Postfix behaviour (main.cf), FEATURES P1."""

    banner: ConfValue | None = Field(
        default=None,
        max_length=200,
        description="Text after the host name in the 220 greeting; default 'ESMTP'.",
    )
    message_size_limit: int = Field(
        default=52_428_800,
        ge=1024,
        le=2**31 - 1,
        description="Largest message in bytes; 50 MiB, as the guide recommends over Postfix's 10.",
    )
    recipient_limit: int = Field(
        default=1000, ge=1, le=100_000, description="Most recipients in one message."
    )
    disable_vrfy: bool = Field(
        default=True, description="Refuse VRFY so spammers cannot probe addresses."
    )
    delay_reject: bool = Field(
        default=True, description="Reject at RCPT TO, when everything is known (Postfix default)."
    )
    inet_protocols: Literal["ipv4", "ipv6", "all"] = Field(
        default="ipv4", description="Address families; IPv4 by default, as Docker networks are."
    )
    masquerade_domains: list[Domain] = Field(
        default_factory=list, description="Strip host names below these domains from senders."
    )
    inet_interfaces: list[
        Literal["all", "loopback-only"] | ipaddress.IPv4Address | ipaddress.IPv6Address
    ] = Field(
        default_factory=lambda: ["all"],  # type: ignore[arg-type]  # validated to the Literal
        min_length=1,
        description="Addresses Postfix listens on: all, loopback-only, or IPs.",
    )
    bind_address: ipaddress.IPv4Address | None = Field(
        default=None, description="Source address of outgoing SMTP (smtp_bind_address)."
    )
    bind_address6: ipaddress.IPv6Address | None = Field(
        default=None, description="Source IPv6 address of outgoing SMTP (smtp_bind_address6)."
    )
    verbose: list[Literal["smtp", "submission", "smtps", "lmtp", "smtp-out", "cleanup"]] = Field(
        default_factory=list,
        description="Services that log verbosely (-v in master.cf); for debugging only.",
    )
    tls_level: Literal["may", "encrypt", "none"] = Field(
        default="may", description="TLS on port 25: offered (may), required, or off."
    )
    outbound_tls: Literal["none", "may", "encrypt"] = Field(
        default="may", description="TLS when sending to other servers (smtp_tls_security_level)."
    )
    tls_loglevel: int = Field(default=0, ge=0, le=4, description="smtpd/smtp TLS log level.")
    dialup: bool = Field(
        default=False,
        description="Dial-up mode: keep outgoing mail queued (defer_transports = smtp, no DNS) "
        "until `mailctl queue flush`.",
    )


class Ldap(Group):
    """saslauthd's ldap mechanism (saslauthd.conf), FEATURES S1."""

    servers: list[LdapUrl] = Field(
        default_factory=list, description="LDAP servers, e.g. ldap://ldap.example.com/."
    )
    search_base: ConfValue | None = Field(
        default=None, description="Where users are searched, e.g. ou=people,dc=example,dc=com."
    )
    filter: ConfValue = Field(
        default="(mail=%u)",
        description="Search filter; %u is the whole login (alice@example.com), %U its local "
        "part, %d its domain.",
    )
    bind_dn: ConfValue | None = Field(
        default=None, description="DN to search as; unset: an anonymous search."
    )
    bind_password_file: FilePath | None = Field(
        default=None, description="File holding bind_dn's password (a secret)."
    )
    start_tls: bool = Field(default=False, description="Use STARTTLS to the LDAP server.")


class Sasl(Group):
    """Who may log in and how (saslauthd, shared by Postfix and Cyrus), FEATURES S1-S5."""

    mechanism: Literal["pam", "sasldb", "shadow", "rimap", "ldap"] = Field(
        default="pam",
        description="saslauthd mechanism. pam: the users' crypt hashes (pam_pwdfile). "
        "sasldb: the SASL database on the users volume (needs clear passwords: password_file "
        "or `mailctl user add`). shadow: system accounts made for the users. rimap: log in "
        "to the IMAP server rimap_server. ldap: bind to the LDAP servers of sasl.ldap.",
    )
    pwcheck_method: Literal["saslauthd", "auxprop"] = Field(
        default="saslauthd",
        description="How Postfix checks passwords (smtpd.conf): through saslauthd, or "
        "auxprop, reading the copy of sasldb2 in its chroot (mechanism sasldb only).",
    )
    rimap_server: RimapServer | None = Field(
        default=None, description="IMAP server for mechanism rimap: host or host:port."
    )
    ldap: Ldap = Field(default_factory=Ldap)
    mech_list: list[Literal["plain", "login"]] = Field(
        default_factory=lambda: ["plain", "login"],  # type: ignore[arg-type]
        min_length=1,
        description="SASL mechanisms offered (LOGIN for Outlook), only ever after TLS.",
    )
    noplaintext: bool = Field(
        default=True,
        description="Refuse plaintext mechanisms on a connection without TLS (noplaintext).",
    )
    broken_clients: bool = Field(
        default=False,
        description="Also announce AUTH=... for old Outlook (broken_sasl_auth_clients).",
    )
    local_domain: Domain | None = Field(
        default=None, description="Realm appended to logins without one (smtpd_sasl_local_domain)."
    )
    on_port_25: bool = Field(
        default=False, description="Offer AUTH on port 25 too (after STARTTLS); off by default."
    )

    @model_validator(mode="after")
    def _mechanism_options(self) -> Sasl:
        mech = mechanism(self.mechanism)
        if self.pwcheck_method == "auxprop" and mech.store != "sasldb":
            raise ValueError(
                "sasl.pwcheck_method: auxprop reads sasldb2, so it needs sasl.mechanism: sasldb"
            )
        if mech.server == "rimap_server" and self.rimap_server is None:
            raise ValueError(f"sasl.rimap_server: mechanism {mech.name} needs the IMAP server")
        if mech.server == "ldap" and not (self.ldap.servers and self.ldap.search_base):
            raise ValueError(f"sasl.ldap: mechanism {mech.name} needs servers and search_base")
        if (self.ldap.bind_dn is None) != (self.ldap.bind_password_file is None):
            raise ValueError("sasl.ldap: give both bind_dn and bind_password_file, or neither")
        return self


class RelayLogin(Group):
    """A relay host and the login this server uses there (FEATURES S6)."""

    host: NextHop = Field(description="e.g. [smtp.example.net]:587 (brackets: no MX lookup).")
    username: ConfValue | None = Field(default=None, description="Login at the relay host.")
    password_file: FilePath | None = Field(
        default=None, description="File holding that login's password (a secret)."
    )

    @model_validator(mode="after")
    def _both(self) -> RelayLogin:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("give both username and password_file, or neither")
        if self.username is not None and ":" in self.username:
            raise ValueError("username: a ':' would end the login in smtp_sasl_password_maps")
        return self


class Relay(Group):
    """Outbound mail through a provider's relay host (relayhost, FEATURES S6, P16)."""

    host: NextHop | None = Field(
        default=None, description="relayhost for all outbound mail, e.g. [smtp.example.net]:587."
    )
    username: ConfValue | None = Field(default=None, description="Login at the relay host.")
    password_file: FilePath | None = Field(
        default=None, description="File holding that login's password (a secret)."
    )
    senders: dict[SenderKey, RelayLogin] = Field(
        default_factory=dict,
        description="Sender address or @domain -> its own relay host and login "
        "(sender_dependent_relayhost_maps with smtp_sender_dependent_authentication).",
    )

    @model_validator(mode="after")
    def _complete(self) -> Relay:
        check_login(self.username, self.password_file, "relay")
        if self.username is not None and self.host is None:
            raise ValueError("relay.username: a login needs relay.host")
        return self


def check_login(username: str | None, password_file: Path | None, group: str) -> None:
    """A login of Postfix's SMTP client (smtp_sasl_password_maps): both halves or none."""
    if (username is None) != (password_file is None):
        raise ValueError(f"{group}.username: give both username and password_file, or neither")
    if username is not None and ":" in username:
        raise ValueError(f"{group}.username: a ':' would end the login in smtp_sasl_password_maps")


class Cyrus(Group):
    """Cyrus IMAP (imapd.conf), FEATURES C1-C5."""

    admins: list[Address] = Field(
        default_factory=list,
        description="Users who are Cyrus admins (may see and manage every mailbox).",
    )
    quota_warn: int = Field(default=90, ge=1, le=100, description="Warn at this % of the quota.")
    allow_plaintext: bool = Field(
        default=False,
        description="Accept passwords on IMAP 143 and POP3 110 without TLS (allowplaintext). "
        "Off: clients must STARTTLS first. Turn on only for a peer that cannot, such as "
        "another server's saslauthd rimap on a private network.",
    )
    timeout: int = Field(default=30, ge=30, le=1440, description="IMAP idle timeout, minutes.")
    pop_timeout: int = Field(default=10, ge=10, le=1440, description="POP3 idle timeout, minutes.")
    over_quota_perm_failure: bool = Field(
        default=False,
        description="Over quota: bounce at once (true) or defer and retry (false, the default).",
    )
    pop3: bool = Field(default=True, description="Serve POP3 (110) and POP3S (995).")


class Greylisting(Group):
    """postgrey in front of mail from strangers, FEATURES G1."""

    enabled: bool = Field(default=True, description="Greylist unknown outside senders.")
    delay: int = Field(
        default=300, ge=1, le=86_400, description="Seconds a new sender must wait before retrying."
    )
    whitelist_clients: list[Domain | Network] = Field(
        default_factory=list, description="Client host names, IPs or networks never greylisted."
    )
    whitelist_recipients: list[AliasKey] = Field(
        default_factory=list, description="Recipients (address or @domain) never greylisted."
    )


_DURATION = re.compile(r"^([1-9][0-9]{0,7})([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def duration(value: str) -> str:
    """A time span like 30s, 5m, 12h or 180d."""
    if not isinstance(value, str) or not _DURATION.match(value):
        raise ValueError("a duration is a number and a unit: 30s, 5m, 12h or 180d")
    return value


def seconds(value: str) -> int:
    m = _DURATION.match(value)
    if m is None:
        raise ValueError(f"not a duration: {value!r}")
    return int(m.group(1)) * _UNIT[m.group(2)]


Duration = Annotated[str, AfterValidator(duration)]


class Dkim(Group):
    """DKIM signing of outgoing mail for every domain and alias domain, with key rotation.

    Keys are made here (RSA-2048) and kept on the state volume. A new key signs only
    once its TXT record is published on the domain's name servers and has been seen
    there for its TTL (`mailctl dns` prints what to publish); the key it replaces stays
    published for `retire_after`, then retires. Selector names are never reused."""

    enabled: bool = Field(default=True, description="Sign mail from logged-in users and networks.")
    rotate_after: Duration = Field(default="180d", description="Age at which a key is replaced.")
    retire_after: Duration = Field(
        default="7d",
        description="How long a replaced key stays published: longer than mail can wait in "
        "a queue anywhere (Postfix's own limit is 5d).",
    )
    dns_check_every: Duration = Field(
        default="5m", description="How often the name servers are asked about new keys."
    )
    ed25519: bool = Field(
        default=False,
        description="Also sign with an Ed25519 key (RFC 8463), beside the RSA signature that "
        "receivers without Ed25519 check; its keys rotate the same way. Never Ed25519 alone.",
    )

    def algorithms(self) -> tuple[Literal["rsa", "ed25519"], ...]:
        return ("rsa", "ed25519") if self.ed25519 else ("rsa",)


class Spf(Group):
    """SPF checks of mail from outside (postfix-policyd-spf-python), with a Received-SPF
    header on what passes. Logged-in users and `networks` are not checked. A domain
    whose record cannot be read (DNS trouble) is never a reason to refuse mail."""

    enabled: bool = Field(default=True, description="Check the sender's SPF record.")
    fail: Literal["reject", "mark"] = Field(
        default="reject",
        description="A hard fail (the domain's `-all` excludes the client): refuse it with "
        "550, or only say so in Received-SPF. Softfail (`~all`) is always only marked.",
    )


class Dmarc(Group):
    """DMARC evaluation of mail from outside (OpenDMARC, after OpenDKIM and SPF). Its
    verdict goes into an Authentication-Results header under our hostname. OpenDMARC
    never stops mail by failing: if it crashes or hangs, mail is accepted unevaluated."""

    enabled: bool = Field(default=True, description="Evaluate DMARC for mail from outside.")
    policy: Literal["none", "quarantine", "reject"] = Field(
        default="none",
        description="none: report only (the header). quarantine: also hold failing mail of "
        "domains that ask for quarantine or reject in the hold queue (mailctl queue list "
        "--queue hold; release or delete). reject: refuse failing mail of domains that "
        "publish p=reject with 550, and hold that of p=quarantine domains.",
    )


class Srs(Group):
    """SRS (postsrsd) for mail that aliases forward to other domains: the envelope sender
    becomes an address of ours, so the receiving server's SPF check passes, and bounces
    to it come back to the original sender. Active only while an alias forwards outside."""

    enabled: bool = Field(default=True, description="Rewrite senders of forwarded mail.")


class Selfcheck(Group):
    """The DNS self-check (`mailctl selfcheck`, GET /checks): does the world see this
    server as a good sender? MX, forward-confirmed reverse DNS, SPF, DKIM, DMARC and
    blocklists, each ok, warn, fail or unknown. It runs when asked, never for readiness,
    and at most once a minute for the same question (blocklists throttle busy askers)."""

    address: ipaddress.IPv4Address | None = Field(
        default=None,
        description="The public IPv4 address mail leaves from (after any NAT): its PTR, SPF "
        "and blocklist listings are checked, and an MX host with this A record counts as "
        "ours. Unset: smtp.bind_address if that is a public address; otherwise those checks "
        "say unknown (`mailctl selfcheck --address` gives one for a run).",
    )
    blocklists: list[Domain] = Field(
        default_factory=list,
        description="DNSBL zones the address is looked up in, e.g. zen.spamhaus.org. None by "
        "default: some lists answer only through your own resolver, or not for commercial use.",
    )
    domain_blocklists: list[Domain] = Field(
        default_factory=list,
        description="Domain blocklists the mail domains are looked up in, e.g. dbl.spamhaus.org.",
    )
    every: Duration = Field(
        default="1h",
        description="How long a result is reused: a request within it gets the last result "
        "(with its time) unless it asks for a refresh, which still runs at most once a minute.",
    )


class Postscreen(Group):
    """postscreen(8) in front of port 25: it answers new clients first and hands only
    those that pass its tests to smtpd. Zombies that talk before their turn (pregreet),
    clients that pipeline without asking, send non-SMTP commands or bare newlines, and
    clients the blocklists in `rbl.lists` score at `dnsbl_threshold` or more are
    refused. A client that passes is remembered (on the postfix-data volume) and goes
    straight to smtpd next time. `networks`, loopback, the networks in `rbl.whitelist`
    and the networks `access.clients` lets through (OK, PERMIT) skip every test.
    Submission (587, 465) never goes through postscreen."""

    enabled: bool = Field(
        default=True, description="Screen port 25 with postscreen (internet-facing servers)."
    )
    greet_wait: int = Field(
        default=6,
        ge=1,
        le=60,
        description="Seconds a new client waits for the greeting, while postscreen watches "
        "whether it talks first and the blocklists answer (postscreen_greet_wait).",
    )
    protocol_tests: bool = Field(
        default=True,
        description="The tests after the greeting (pipelining, non-SMTP commands, bare "
        "newlines). A new client that passes them is told to come back (450) once, like "
        "greylisting; real mail servers do, and are remembered for a week.",
    )
    dnsbl_threshold: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Refuse a client whose blocklist weights (rbl.lists) add up to this.",
    )
    dnsbl_weights: dict[Domain, Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=dict,
        description="Weight of a zone of rbl.lists (default 1), e.g. zen.spamhaus.org: 3 "
        "with dnsbl_threshold 3 refuses on that list alone but not on one weaker list.",
    )


class ProxyProtocol(Group):
    """PROXY protocol (v1 and v2, as haproxy sends them) for deployments behind a TCP load
    balancer: extra ports where every connection must start with the balancer's PROXY
    header, so that greylisting, blocklists, access maps and logs see the original client
    address. A client that speaks plain SMTP there is refused. The plain ports stay as
    they are (fetchmail and local clients use them).

    A PROXY port believes whatever address the header names, including one of `networks`:
    it must be reachable only from the balancer (a firewall, a NetworkPolicy, or no
    published port), never from the internet itself."""

    smtp: bool = Field(
        default=False,
        description="Port 12525 takes port-25 traffic from the balancer (through "
        "postscreen when it is on).",
    )
    submission: bool = Field(
        default=False,
        description="Ports 10587 and 10465 take submission (STARTTLS) and submissions "
        "(TLS) traffic from the balancer.",
    )


class Edge(Group):
    """`role: edge`: this container is an inbound MX in front of the mailbox node. It
    accepts mail for `domains` and `alias_domains` (recipients asked of the mailbox node,
    or checked against the settings' users and aliases: `recipients`), screens, greylists and
    checks SPF, queues on its own volume and passes the mail on to the mailbox node's
    edge port over SMTP with TLS. It has no mailboxes, no IMAP and no submission; DKIM,
    DMARC, aliases and SRS happen on the mailbox node. On stop it drains: it takes no
    new mail, flushes its queue and waits (up to `drain_timeout`) until it is empty."""

    mailbox_host: Annotated[str, AfterValidator(names.host_or_ipv4)] | None = Field(
        default=None,
        description="The mailbox node, for role: edge: a name its resolver knows (a compose "
        "service; on Kubernetes the full name, e.g. mailserver-0.mailserver-pods.mail.svc."
        "cluster.local: Postfix does not use the resolver's search list) or an IPv4 address.",
    )
    mailbox_port: int = Field(
        default=10025, ge=1, le=65535, description="Its edge port (the mailbox's `edges`)."
    )
    tls: Literal["encrypt", "may"] = Field(
        default="encrypt",
        description="TLS to the mailbox node: required (encrypt) or when offered (may).",
    )
    username: ConfValue | None = Field(
        default=None,
        description="Login of the edges at the mailbox node's edge port (one of its users); "
        "the mailbox node then takes the edges' mail only with it, and only over TLS.",
    )
    password_file: FilePath | None = Field(
        default=None, description="File holding that login's password (a secret)."
    )
    recipients: Literal["verify", "settings"] = Field(
        default="verify",
        description="How an edge knows a recipient. verify: it asks the mailbox node "
        "(address verification, remembered on the postfix-data volume), so users and "
        "aliases added there with the CLI or the API are known too; while the node is "
        "down a recipient not asked about before gets 450 (try later), never 550. "
        "settings: only the users and aliases of the settings file.",
    )
    drain_timeout: int = Field(
        default=20,
        ge=0,
        le=3600,
        description="Seconds a stopping edge waits for its queue to empty. Keep it below the "
        "stop grace period (compose stop_grace_period, Kubernetes "
        "terminationGracePeriodSeconds) minus 10 s; what is left stays queued on the volume.",
    )

    @model_validator(mode="after")
    def _login(self) -> Edge:
        check_login(self.username, self.password_file, "edge")
        if self.username is not None and self.tls != "encrypt":
            raise ValueError(
                "edge.tls: a login's password travels only over TLS; set it to encrypt"
            )
        return self


class Tls(Group):
    """The server certificate, FEATURES P16. Unset: a self-signed one is made and kept."""

    cert_file: FilePath | None = Field(default=None, description="PEM certificate chain.")
    key_file: FilePath | None = Field(default=None, description="PEM private key.")

    @model_validator(mode="after")
    def _both_or_neither(self) -> Tls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        return self


class Settings(BaseSettings):
    """Everything the appliance does, from one YAML file plus MAIL_* env vars."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix="MAIL_",
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    hostname: Hostname = Field(
        description="This server's name (myhostname), e.g. mail.example.com."
    )
    role: Literal["mailbox", "edge"] = Field(
        default="mailbox",
        description="mailbox: the whole mail server. edge: an inbound MX that passes mail "
        "on to the mailbox node (see `edge`); typically set per container, MAIL_ROLE=edge.",
    )
    edge: Edge = Field(default_factory=Edge)
    edges: list[Network] = Field(
        default_factory=list,
        description="On the mailbox node: networks of its edge MXs. Port 10025 then takes "
        "their mail for the local domains, without postscreen, greylisting or SPF (the "
        "edges did those). Never publish port 10025; it cannot relay.",
    )
    domain: Domain | None = Field(
        default=None, description="mydomain; default: the hostname without its first label."
    )
    domains: list[Domain] = Field(
        default_factory=list, description="Mail domains whose users have mailboxes here (Cyrus)."
    )
    alias_domains: list[Domain] = Field(
        default_factory=list, description="Domains that only forward (virtual_alias_domains)."
    )
    local_domains: list[Domain] = Field(
        default_factory=list, description="Extra mydestination domains (system mail)."
    )
    relay_domains: list[Domain] = Field(
        default_factory=list,
        description="Domains this server accepts and passes on (backup MX, a backend behind "
        "it): routed by maps.transports or their MX. Pair with reject_unverified_recipient.",
    )
    networks: list[Network] = Field(
        default_factory=list,
        description="Trusted client networks that may relay without login; loopback is always in.",
    )
    users: list[User] = Field(default_factory=list, description="Mailbox users.")
    aliases: dict[AliasKey, list[Address] | Address] = Field(
        default_factory=dict,
        description="address or @domain -> one or more targets (virtual_alias_maps).",
    )
    maps: Maps = Field(default_factory=Maps)
    access: Access = Field(default_factory=Access)
    restrictions: Restrictions = Field(default_factory=Restrictions)
    rbl: Rbl = Field(default_factory=Rbl)
    postscreen: Postscreen = Field(default_factory=Postscreen)
    proxy_protocol: ProxyProtocol = Field(default_factory=ProxyProtocol)
    smtp: Smtp = Field(default_factory=Smtp)
    sasl: Sasl = Field(default_factory=Sasl)
    relay: Relay = Field(default_factory=Relay)
    greylisting: Greylisting = Field(default_factory=Greylisting)
    dkim: Dkim = Field(default_factory=Dkim)
    spf: Spf = Field(default_factory=Spf)
    srs: Srs = Field(default_factory=Srs)
    dmarc: Dmarc = Field(default_factory=Dmarc)
    cyrus: Cyrus = Field(default_factory=Cyrus)
    fetchmail: Fetchmail = Field(default_factory=Fetchmail)
    tls: Tls = Field(default_factory=Tls)
    selfcheck: Selfcheck = Field(default_factory=Selfcheck)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Env vars win over the file: an operator's override beats the shared file.
        return (env_settings, init_settings)

    @property
    def is_edge(self) -> bool:
        return self.role == "edge"

    @property
    def mydomain(self) -> str:
        return self.domain or self.hostname.split(".", 1)[1]

    @property
    def local_names(self) -> list[str]:
        """Everything in mydestination."""
        own = [self.hostname, "localhost", f"localhost.{self.mydomain}"]
        return list(dict.fromkeys(own + self.local_domains))

    def alias_targets(self) -> dict[str, list[str]]:
        return {k: [v] if isinstance(v, str) else list(v) for k, v in self.aliases.items()}

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        self.check_consistent()
        return self

    def check_consistent(self) -> None:
        """The rules across the tree (ValueError naming the setting)."""
        _check_networks(self.networks)
        _no_overlap(
            "domains", self.domains, "the local names (hostname, local_domains)", self.local_names
        )
        _no_overlap("alias_domains", self.alias_domains, "domains", self.domains)
        _no_overlap(
            "alias_domains",
            self.alias_domains,
            "the local names (hostname, local_domains)",
            self.local_names,
        )
        _no_overlap(
            "relay_domains",
            self.relay_domains,
            "the local names (hostname, local_domains)",
            self.local_names,
        )
        _no_overlap("relay_domains", self.relay_domains, "domains", self.domains)
        both = sorted(set(self.alias_domains) & set(self.relay_domains))
        if both:
            raise ValueError(
                f"relay_domains: {both[0]} is also in alias_domains; Postfix would warn "
                f"'do not list domain {both[0]} in BOTH virtual_alias_domains and "
                "relay_domains' and relay it the wrong way; list it in one of them"
            )
        mailbox_domains = set(self.domains)
        seen: set[str] = set()
        local_check = mechanism(self.sasl.mechanism).local_passwords
        for i, user in enumerate(self.users):
            if local_check and user.password_hash is None and user.password_file is None:
                raise ValueError(
                    f"users.{i}: sasl.mechanism {self.sasl.mechanism} checks "
                    "passwords here: give password_hash or password_file"
                )

            dom = user.address.split("@")[1]
            if dom not in mailbox_domains:
                raise ValueError(f"users.{i}.address: domain {dom!r} is not listed in 'domains'")
            if user.address in seen:
                raise ValueError(f"users.{i}.address: {user.address!r} is listed twice")
            seen.add(user.address)
        classes = set(self.restrictions.classes)
        for stage, table in (
            ("clients", self.access.clients),
            ("helo", self.access.helo),
            ("senders", self.access.senders),
            ("recipients", self.access.recipients),
        ):
            for key, act in table.items():
                if act.islower() and act not in classes:
                    raise ValueError(
                        f"access.{stage}.{names.printable(key)}: {act!r} is not a "
                        "restriction class in restrictions.classes"
                    )
        auth_ports = {"submission", "smtps"} | ({"smtp"} if self.sasl.on_port_25 else set())
        leaky = sorted(auth_ports & set(self.smtp.verbose))
        if leaky:
            raise ValueError(
                f"smtp.verbose: {', '.join(leaky)} offer AUTH; smtpd -v would write the "
                "base64 of every password to the log, so verbose is refused there"
            )
        if self.role == "edge" and self.edge.mailbox_host is None:
            raise ValueError("edge.mailbox_host: role edge passes mail on to it; give its name")
        for i, net in enumerate(self.edges):
            if net.prefixlen < MIN_PREFIX[net.version]:
                raise ValueError(f"edges.{i}: {net} is wider than /{MIN_PREFIX[net.version]}")
        for zone in self.postscreen.dnsbl_weights:
            if zone not in self.rbl.lists:
                raise ValueError(
                    f"postscreen.dnsbl_weights.{zone}: not one of rbl.lists; a weight only "
                    "counts for a list that is asked"
                )
        for i, admin in enumerate(self.cyrus.admins):
            if admin not in seen:
                raise ValueError(f"cyrus.admins.{i}: {admin!r} is not one of the users")
        forwarding = mailbox_domains | set(self.alias_domains) | set(self.local_names)
        for key in self.aliases:
            dom = key.split("@")[1]
            where = f"aliases.{names.printable(key)}"
            if dom not in forwarding:
                raise ValueError(
                    f"{where}: domain {dom!r} is in none of 'domains', "
                    "'alias_domains' or 'local_domains'"
                )
            if key in seen:
                raise ValueError(f"{where}: is also a user; a user address cannot be an alias")
        for setting, targets in (
            ("aliases", self.alias_targets()),
            ("maps.local_aliases", dict(self.maps.local_aliases)),
        ):
            loop = alias_loop(targets)
            if loop:
                shown = " -> ".join(names.printable(a) for a in loop)
                raise ValueError(
                    f"{setting}.{names.printable(loop[0])}: {shown} is a loop; mail sent "
                    "there would never reach a mailbox"
                )
        logins = (["relay"] if self.relay.username else []) + [
            f"relay.senders.{names.printable(k)}"
            for k, v in self.relay.senders.items()
            if v.username
        ]
        if logins and self.smtp.outbound_tls == "none":
            raise ValueError(
                f"{logins[0]}.username: a relay login needs TLS, but smtp.outbound_tls is "
                "none and the password would travel in plain text; set smtp.outbound_tls "
                "to may or encrypt"
            )


def alias_loop(aliases: dict[str, list[str]]) -> list[str] | None:
    """The first definite loop among alias keys, as [a, b, ..., a], or None.

    An address whose only target is itself is a loop. One that keeps a copy among other
    targets (a -> a, b) is Postfix's documented idiom and is not. Catch-alls (@domain)
    are left out: whether one applies to a target depends on what else matches it.
    """
    edges: dict[str, list[str]] = {}
    for key, targets in sorted(aliases.items()):
        if key.startswith("@"):
            continue
        if set(targets) == {key}:
            return [key, key]
        edges[key] = sorted({t for t in targets if t != key})
    done: set[str] = set()
    for start in edges:
        if start in done:
            continue
        path = [start]
        todo = [iter(edges[start])]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                done.add(path.pop())
                todo.pop()
            elif nxt in path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt in edges and nxt not in done:
                path.append(nxt)
                todo.append(iter(edges[nxt]))
    return None


def _check_networks(networks: list[Network]) -> None:
    for i, net in enumerate(networks):
        if net.prefixlen < MIN_PREFIX[net.version]:
            raise ValueError(
                f"networks.{i}: {net} is wider than /{MIN_PREFIX[net.version]}; trusting it "
                "would make this server an open relay"
            )


def _no_overlap(name: str, values: list[str], other_name: str, others: list[str]) -> None:
    both = sorted(set(values) & set(others))
    if both:
        raise ValueError(
            f"{name}: {', '.join(both)} is also in {other_name}; a domain can be in only one "
            "of them (Postfix would warn and deliver it the wrong way)"
        )
