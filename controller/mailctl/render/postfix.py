"""Postfix: main.cf, master.cf, lookup tables and smtpd's SASL config. Pure.

Every map path is written as ${config_directory}/NAME so that the same text
validates in a staging directory (`postconf -c STAGE`) and runs live.
"""

from __future__ import annotations

from mailctl.errors import RenderError
from mailctl.layout import LMTP_SOCKET
from mailctl.render import authres, edge, opendkim, opendmarc, postscreen, spf, srs
from mailctl.render import postfix_maps as pm
from mailctl.render import quoting as q
from mailctl.render.bundle import HEADER, LIVE, File, text
from mailctl.render.facts import Facts
from mailctl.render.secrets import Secrets
from mailctl.settings import Settings

LMTP = f"lmtp:unix:{LMTP_SOCKET}"
LOOPBACK = ["127.0.0.0/8", "[::1]/128"]
META = "/usr/lib/postfix/meta"


def mynetworks(settings: Settings) -> list[str]:
    nets = [f"[{n}]" if n.version == 6 else str(n) for n in settings.networks]
    return list(dict.fromkeys(LOOPBACK + nets))


def _with_srs(ref: str, table: str, on: bool) -> str:
    return ", ".join(x for x in (ref, table if on else "") if x)


def _smtpd_milters(settings: Settings) -> list[str]:
    """OpenDKIM first: OpenDMARC reads its verdict; authres last, to fold the verdicts
    into one header. An edge runs none: the mailbox node verifies and evaluates the
    mail it passes on (and signs what leaves)."""
    dmarc = [opendmarc.MILTER] if opendmarc.active(settings) else []
    fold = [authres.MILTER] if authres.active(settings) else []
    return [*_signers(settings), *dmarc, *fold]


MILTER_MAP = "postfix/trusted_milters.cidr"
# main.cf's list of the signers, for master.cf's submission services: a list of two
# has a blank, which no `-o name=value` can hold.
SIGNERS_PARAM = "mailctl_signers"


def _milter_map(settings: Settings) -> bool:
    """Trusted clients need a milter list of their own: port 25 has more than signers."""
    return _smtpd_milters(settings) != _signers(settings)


def trusted_milters(settings: Settings) -> str:
    """smtpd_milter_maps: trusted clients (loopback, `networks`) meet the signers only.
    Nothing of theirs is verified or evaluated (OpenDKIM signs for them, OpenDMARC
    ignores them), so the other milters would only cost each message round trips."""
    milters = " ".join(_signers(settings)) or "DISABLE"
    nets = opendkim.internal_hosts(settings)  # validated networks: no space, no newline
    return HEADER + "".join(f"{net} {milters}\n" for net in nets)


def _signers(settings: Settings) -> list[str]:
    return [milter for *_, milter in opendkim.signers(settings)]


def _canonical(settings: Settings) -> bool:
    m = settings.maps
    return bool(m.canonical or m.sender_canonical or m.recipient_canonical)


def main_cf(settings: Settings) -> str:
    s = settings.smtp
    tables = pm.tables(settings)
    lists = pm.restriction_lists(settings)
    db = settings.maps.table_type
    relay_login = bool(relay_logins(settings))
    is_edge = settings.is_edge
    edge_table = f"{db}:${{config_directory}}/{edge.ROUTES}"
    banner = q.main_cf_text(s.banner, "smtp.banner") if s.banner else "ESMTP"
    on = srs.active(settings)
    if on and settings.maps.sender_canonical:
        raise RenderError(
            "srs.enabled: SRS makes sender_canonical_maps rewrite the envelope only, and "
            "maps.sender_canonical also rewrites From headers; set srs.enabled to false, "
            "or move those entries to maps.canonical"
        )
    p: list[tuple[str, str]] = [
        ("compatibility_level", "3.6"),
        ("meta_directory", META),
        ("default_database_type", settings.maps.table_type),
        ("maillog_file", "/dev/stdout"),
        ("myhostname", settings.hostname),
        ("mydomain", settings.mydomain),
        ("myorigin", "$myhostname"),
        ("mydestination", q.main_cf_list(settings.local_names, "local_domains")),
        ("mynetworks_style", "host"),
        ("mynetworks", q.main_cf_list(mynetworks(settings), "networks")),
        (
            "inet_interfaces",
            q.main_cf_list([str(i) for i in s.inet_interfaces], "smtp.inet_interfaces"),
        ),
        ("smtp_bind_address", str(s.bind_address or "")),
        ("smtp_bind_address6", str(s.bind_address6 or "")),
        ("inet_protocols", s.inet_protocols),
        ("smtpd_banner", f"$myhostname {banner}"),
        ("biff", "no"),
        ("append_dot_mydomain", "no"),
        ("readme_directory", "no"),
        # A queue ID listed by the API or the CLI is never another message's later on.
        ("enable_long_queue_ids", "yes"),
        ("message_size_limit", str(s.message_size_limit)),
        ("mailbox_size_limit", "0"),
        ("smtpd_recipient_limit", str(s.recipient_limit)),
        ("disable_vrfy_command", "yes" if s.disable_vrfy else "no"),
        ("smtpd_delay_reject", "yes" if s.delay_reject else "no"),
        ("masquerade_domains", q.main_cf_list(s.masquerade_domains, "smtp.masquerade_domains")),
        ("alias_maps", tables["aliases"].ref),
        ("alias_database", tables["aliases"].ref),
        ("canonical_maps", tables["canonical"].ref),
        ("sender_canonical_maps", _with_srs(tables["sender_canonical"].ref, srs.FORWARD, on)),
        ("recipient_canonical_maps", _with_srs(tables["recipient_canonical"].ref, srs.REVERSE, on)),
        # SRS rewrites the envelope only: the From header stays the author's.
        ("sender_canonical_classes", "envelope_sender" if on else "envelope_sender, header_sender"),
        # Postfix rewrites headers of mail from remote clients only with this set;
        # the guide's canonical maps rewrite both envelope and header.
        ("remote_header_rewrite_domain", "domain.invalid" if _canonical(settings) else ""),
        ("relocated_maps", tables["relocated"].ref),
        (
            "transport_maps",
            f"{edge_table}, {tables['transport'].ref}" if is_edge else tables["transport"].ref,
        ),
        ("smtpd_sender_login_maps", tables["sender_login"].ref),
        # An edge relays every domain to the mailbox node (render.edge), which has them.
        ("virtual_mailbox_domains", "" if is_edge else q.main_cf_list(settings.domains, "domains")),
        ("virtual_mailbox_maps", "" if is_edge else f"{db}:${{config_directory}}/vmailbox"),
        (
            "virtual_alias_domains",
            "" if is_edge else q.main_cf_list(settings.alias_domains, "alias_domains"),
        ),
        ("virtual_alias_maps", "" if is_edge else f"{db}:${{config_directory}}/virtual"),
        (
            "relay_recipient_maps",
            f"{db}:${{config_directory}}/{edge.RECIPIENTS}"
            if is_edge and not edge.verifies(settings)
            else "",
        ),
        ("virtual_transport", LMTP),
        # DKIM (opendkim): signs submission and trusted networks, verifies the rest.
        # Verification fails open on port 25; submission overrides it to tempfail.
        ("smtpd_milters", ", ".join(_smtpd_milters(settings))),
        (
            "smtpd_milter_maps",
            f"cidr:{LIVE}/{MILTER_MAP}" if _milter_map(settings) else "",
        ),
        ("non_smtpd_milters", ", ".join(_signers(settings))),
        # Submission's: logged-in users' mail is signed, not verified or evaluated. Only
        # where master.cf has submission (no edge): postconf warns of an unused parameter.
        *([] if is_edge else [(SIGNERS_PARAM, ", ".join(_signers(settings)))]),
        ("milter_default_action", "accept"),
        # DMARC marks (dmarc.policy quarantine, reject) on OpenDMARC's own header
        (
            "milter_header_checks",
            f"pcre:{LIVE}/{opendmarc.HEADER_CHECKS}" if opendmarc.active(settings) else "",
        ),
        # SPF (policyd-spf): one per smtpd, kept for the session and beyond.
        *([(f"{spf.SERVICE}_time_limit", "3600")] if settings.spf.enabled else []),
        # TLS (FEATURES P16): offered on 25, required on 587, wrapper mode on 465.
        ("smtpd_tls_cert_file", f"{LIVE}/tls/cert.pem"),
        ("smtpd_tls_key_file", f"{LIVE}/tls/key.pem"),
        ("smtpd_tls_security_level", "" if s.tls_level == "none" else s.tls_level),
        ("smtpd_tls_auth_only", "yes"),
        ("smtpd_tls_protocols", ">=TLSv1.2"),
        ("smtpd_tls_mandatory_protocols", ">=TLSv1.2"),
        ("smtpd_tls_loglevel", str(s.tls_loglevel)),
        ("smtp_tls_loglevel", str(s.tls_loglevel)),
        ("smtpd_tls_session_cache_database", "btree:${data_directory}/smtpd_scache"),
        ("smtp_tls_security_level", "" if s.outbound_tls == "none" else s.outbound_tls),
        ("smtp_tls_session_cache_database", "btree:${data_directory}/smtp_scache"),
        # SASL: off on port 25, switched on per service in master.cf.
        ("smtpd_sasl_auth_enable", "yes" if settings.sasl.on_port_25 else "no"),
        ("broken_sasl_auth_clients", "yes" if settings.sasl.broken_clients else "no"),
        ("smtpd_sasl_local_domain", settings.sasl.local_domain or ""),
        ("smtpd_sasl_type", "cyrus"),
        ("smtpd_sasl_path", "smtpd"),
        ("cyrus_sasl_config_path", "${config_directory}/sasl"),
        (
            "smtpd_sasl_security_options",
            "noanonymous, noplaintext" if settings.sasl.noplaintext else "noanonymous",
        ),
        ("smtpd_sasl_tls_security_options", "noanonymous"),
        # Protocol hardening Postfix 3.7 leaves off (SECURITY.md).
        ("smtpd_forbid_bare_newline", "normalize"),
        ("smtpd_forbid_bare_newline_exclusions", "$mynetworks"),
        ("smtpd_forbid_unauth_pipelining", "yes"),
        ("smtpd_helo_required", "yes"),
        # Outbound through relay hosts with a login (S6); passwords only over TLS.
        ("relayhost", settings.relay.host or ""),
        (
            "sender_dependent_relayhost_maps",
            tables["sender_relay"].ref if settings.relay.senders else "",
        ),
        ("smtp_sender_dependent_authentication", "yes" if settings.relay.senders else "no"),
        ("smtp_sasl_auth_enable", "yes" if relay_login else "no"),
        (
            "smtp_sasl_password_maps",
            f"{db}:${{config_directory}}/{RELAY_PASSWORDS}" if relay_login else "",
        ),
        ("smtp_sasl_security_options", "noanonymous, noplaintext"),
        ("smtp_sasl_tls_security_options", "noanonymous"),
        (
            "relay_domains",
            q.main_cf_list(
                edge.relay_domains(settings) if is_edge else settings.relay_domains,
                "relay_domains",
            ),
        ),
        # Address verification (P11) remembers results on the postfix-data volume.
        ("address_verify_map", "btree:${data_directory}/verify_cache"),
        # Dial-up (P14): hold outgoing mail until a flush, and do not look anything up.
        ("defer_transports", "smtp" if s.dialup else ""),
        ("disable_dns_lookups", "yes" if s.dialup else "no"),
        # The relay guard: fixed, never from a setting (FEATURES P9).
        (
            "smtpd_relay_restrictions",
            "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
        ),
        *[
            (f"smtpd_{stage}_restrictions", ", ".join(lists[stage]))
            for stage in ("client", "helo", "sender", "recipient", "data")
        ],
        ("smtpd_restriction_classes", ", ".join(lists["classes"])),
        *[(name, ", ".join(lists[f"class:{name}"])) for name in lists["classes"]],
        *postscreen.main_cf(settings),
        *edge.main_cf(settings),
        *(
            [
                (
                    edge.CLIENT_CHECK,
                    f"check_client_access cidr:${{config_directory}}/{edge.CLIENTS}, reject",
                )
            ]
            if settings.edges
            else []
        ),
    ]
    seen = [k for k, _ in p]
    twice = sorted({k for k in seen if seen.count(k) > 1})
    if twice:  # the last one would win in main.cf
        raise RenderError(f"main.cf would set {', '.join(twice)} twice")
    return HEADER + "".join(q.fold(k, v) + "\n" for k, v in p)


# service, type, private, unpriv, chroot, wakeup, maxproc, command
_SERVICES: list[tuple[str, ...]] = [
    ("pickup", "unix", "n", "-", "y", "60", "1", "pickup"),
    ("cleanup", "unix", "n", "-", "y", "-", "0", "cleanup"),
    ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
    ("tlsmgr", "unix", "-", "-", "y", "1000?", "1", "tlsmgr"),
    ("rewrite", "unix", "-", "-", "y", "-", "-", "trivial-rewrite"),
    ("bounce", "unix", "-", "-", "y", "-", "0", "bounce"),
    ("defer", "unix", "-", "-", "y", "-", "0", "bounce"),
    ("trace", "unix", "-", "-", "y", "-", "0", "bounce"),
    ("verify", "unix", "-", "-", "y", "-", "1", "verify"),
    ("flush", "unix", "n", "-", "y", "1000?", "0", "flush"),
    ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
    ("proxywrite", "unix", "-", "-", "n", "-", "1", "proxymap"),
    ("smtp", "unix", "-", "-", "y", "-", "-", "smtp"),
    ("relay", "unix", "-", "-", "y", "-", "-", "smtp"),
    ("showq", "unix", "n", "-", "y", "-", "-", "showq"),
    ("error", "unix", "-", "-", "y", "-", "-", "error"),
    ("retry", "unix", "-", "-", "y", "-", "-", "error"),
    ("discard", "unix", "-", "-", "y", "-", "-", "discard"),
    ("local", "unix", "-", "n", "n", "-", "-", "local"),
    ("virtual", "unix", "-", "n", "n", "-", "-", "virtual"),
    ("lmtp", "unix", "-", "-", "n", "-", "-", "lmtp"),
    ("anvil", "unix", "-", "-", "y", "-", "1", "anvil"),
    ("scache", "unix", "-", "-", "y", "-", "1", "scache"),
    ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
]

_AUTH_ONLY = [
    ("smtpd_sasl_auth_enable", "yes"),
    # Decide at RCPT, after AUTH, whatever smtpd_delay_reject says for port 25.
    ("smtpd_delay_reject", "yes"),
    ("smtpd_helo_restrictions", "permit"),
    ("smtpd_data_restrictions", "reject_unauth_pipelining"),
    ("smtpd_tls_auth_only", "yes"),
    ("smtpd_client_restrictions", "permit_sasl_authenticated,reject"),
    ("smtpd_relay_restrictions", "permit_sasl_authenticated,reject"),
    ("smtpd_recipient_restrictions", "permit_sasl_authenticated,reject"),
    ("milter_macro_daemon_name", "ORIGINATING"),
    # A signer that does not answer defers the message: never unsigned mail sent silently.
    ("milter_default_action", "tempfail"),
]


def master_cf(settings: Settings) -> str:
    auth_only = list(_AUTH_ONLY)
    if settings.maps.sender_login:
        auth_only.append(
            (
                "smtpd_sender_restrictions",
                "reject_sender_login_mismatch,permit_sasl_authenticated,reject",
            )
        )
    verbose = set(settings.smtp.verbose)

    def cmd(service: str, command: str) -> str:
        return f"{command} -v" if service in verbose else command

    lines = [HEADER, "# service type  private unpriv  chroot  wakeup  maxproc command + args\n"]
    lines += [_row(r) for r in postscreen.port25_rows(settings, cmd("smtp", "smtpd"))]
    submission = {
        "submission": [("smtpd_tls_security_level", "encrypt")],
        "smtps": [("smtpd_tls_wrappermode", "yes")],
    }
    proxy = [("smtpd_upstream_proxy_protocol", "haproxy")]
    listeners: list[tuple[str, str, list[tuple[str, str]]]] = [(n, n, []) for n in submission]
    listeners += [(port, name, proxy) for port, name in postscreen.submission_ports(settings)]
    if settings.is_edge:  # no users log in on an edge
        listeners = []
    for listener, name, extra in listeners:
        lines.append(_row((listener, "inet", "n", "-", "y", "-", "-", cmd(name, "smtpd"))))
        options = [("syslog_name", f"postfix/{name}"), *submission[name], *extra, *auth_only]
        for key, value in options:
            lines.append(f"  {q.master_option(key, value, f'master.cf {listener}')}\n")
        lines.append(f"  -o smtpd_milters=${SIGNERS_PARAM}\n")  # a constant of ours
    if settings.edges:
        port = str(edge.EDGE_PORT)
        lines.append(_row((port, "inet", "n", "-", "y", "-", "-", cmd("smtp", "smtpd"))))
        # Constants of ours, no setting in them; one names a main.cf parameter ($).
        lines += [f"  -o {key}={value}\n" for key, value in edge.port_options(settings)]
    if settings.is_edge:
        lines.append(_row(edge.transport_row(settings)))
        lines.append(_row(edge.verify_row(settings)))
    by_service = {"smtp": "smtp-out", "lmtp": "lmtp", "cleanup": "cleanup"}
    for row in _SERVICES:
        if row[0] in by_service:
            row = (*row[:7], cmd(by_service[row[0]], row[7]))
        lines.append(_row(row))
    if settings.spf.enabled:
        lines.append(_row(spf.master_row()))
    return "".join(lines)


def _row(cols: tuple[str, ...]) -> str:
    return "{:<10} {:<10} {:<7} {:<7} {:<7} {:<7} {:<7} {}\n".format(*cols)


def virtual_map(settings: Settings) -> str:
    lines = [HEADER]
    aliases = settings.alias_targets()
    catchall = {k[1:] for k in aliases if k.startswith("@")}
    for user in settings.users:
        # A catch-all would swallow the real users' mail too; map them to themselves.
        if user.address.split("@")[1] in catchall:
            aliases.setdefault(user.address, [user.address])
    for key, targets in sorted(aliases.items()):
        value = ", ".join(targets)
        lines.append(q.map_line(key, value, f"aliases.{key}") + "\n")
    return "".join(lines)


def vmailbox_map(settings: Settings) -> str:
    # The value is only a marker: delivery goes to Cyrus over LMTP.
    lines = [HEADER] + [q.map_line(u.address, "cyrus", "users") + "\n" for u in settings.users]
    return "".join(lines)


RELAY_PASSWORDS = "relay_passwords"


def relay_logins(settings: Settings) -> dict[str, str]:
    """smtp_sasl_password_maps key -> login: the relayhost, then each sender's own, and
    an edge's at the mailbox node."""
    r = settings.relay
    logins = {r.host: r.username} if r.host and r.username else {}
    logins.update({k: v.username for k, v in r.senders.items() if v.username})
    if settings.is_edge and settings.edge.username:
        logins[edge.login_key(settings)] = settings.edge.username
    return logins


def relay_passwords(settings: Settings, secrets: Secrets) -> dict[str, File]:
    """The relay logins with their passwords: root only, like its compiled .db."""
    lines = [HEADER]
    for key, user in sorted(relay_logins(settings).items()):
        where = (
            "relay.password_file"
            if key == settings.relay.host
            else "edge.password_file"
            if settings.is_edge and key == edge.login_key(settings)
            else f"relay.senders.{key}.password_file"
        )
        if key not in secrets.relay_passwords:
            raise RenderError(f"{where}: no password was read")
        secret = q.map_value(
            f"{user}:{secrets.relay_passwords[key]}", f"relay password for {key}", secret=True
        )
        lines.append(q.map_line(key, secret, f"relay.{key}") + "\n")
    return {f"postfix/{RELAY_PASSWORDS}": File("".join(lines).encode(), 0o600)}


def smtpd_sasl_conf(settings: Settings) -> str:
    """smtpd.conf (FEATURES S2). Paths are inside smtpd's chroot /var/spool/postfix."""
    mechs = " ".join(settings.sasl.mech_list)
    if settings.sasl.pwcheck_method == "auxprop":
        check = "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: /etc/sasldb2\n"
    else:
        check = "pwcheck_method: saslauthd\nsaslauthd_path: /var/run/saslauthd/mux\n"
    return HEADER + check + f"mech_list: {mechs}\n"


def files(settings: Settings, facts: Facts | None = None) -> dict[str, File]:
    out = {
        "postfix/main.cf": text(main_cf(settings)),
        "postfix/master.cf": text(master_cf(settings)),
        "postfix/virtual": text(virtual_map(settings)),
        "postfix/vmailbox": text(vmailbox_map(settings)),
        "postfix/sasl/smtpd.conf": text(smtpd_sasl_conf(settings)),
    }
    out.update({t.path: text(t.text) for t in pm.tables(settings, facts).values()})
    if settings.postscreen.enabled:
        out[postscreen.ACCESS] = text(postscreen.access_table(settings))
    if settings.is_edge:
        out[f"postfix/{edge.RECIPIENTS}"] = text(edge.recipients(settings))
        out[f"postfix/{edge.ROUTES}"] = text(edge.routes(settings))
        out[f"postfix/{edge.VERIFY_ROUTES}"] = text(edge.routes(settings, edge.VERIFY))
        out[f"postfix/{edge.STATUS_FILTER}"] = text(edge.status_filter())
    if settings.edges:
        out[f"postfix/{edge.CLIENTS}"] = text(edge.clients(settings))
    if _milter_map(settings):
        out[MILTER_MAP] = text(trusted_milters(settings))
    return out


def postmap_paths(settings: Settings) -> tuple[str, ...]:
    """Tables to compile with postmap (aliases go to postalias)."""
    hashed = [
        t.path
        for t in pm.tables(settings).values()
        if t.kind == settings.maps.table_type and t.name != "aliases"
    ]
    edge_maps = (
        [f"postfix/{n}" for n in (edge.RECIPIENTS, edge.ROUTES, edge.VERIFY_ROUTES)]
        if settings.is_edge
        else []
    )
    return (
        "postfix/virtual",
        "postfix/vmailbox",
        f"postfix/{RELAY_PASSWORDS}",
        *hashed,
        *edge_maps,
    )


ALIASES = ("postfix/aliases",)
