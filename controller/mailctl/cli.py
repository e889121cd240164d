"""The command line: `mailctl run` is the container's main process; `check`
validates settings the way `run` would (nothing goes live); the rest are the
operator's tools (user, alias, domain, mailbox, queue, lookup, status, logs,
metrics, dkim, dns, selfcheck). They call the operations layer (mailctl.ops), as the
admin API does: each verb has its route there.

Side effects: `run` owns the container (daemons, /dev/log, the API).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from mailctl.errors import MailctlError
from mailctl.layout import Layout
from mailctl.settings.loader import load_settings
from mailctl.settings.mechanisms import mechanism
from mailctl.supervise import output

if TYPE_CHECKING:
    from mailctl.reconcile import Controller

# After SIGTERM the daemons get this long to stop (Supervisor.stop_all's deadline);
# past it (plus a margin) the controller exits anyway rather than wait for SIGKILL.
HARD_EXIT_AFTER = 25.0


def _layout(args: argparse.Namespace) -> Layout:
    return Layout.from_env(args.settings_dir)


def _serve_api(source: Controller, port: int, layout: Layout) -> None:
    """Serve the API from a thread of its own; importing FastAPI and uvicorn takes most
    of a second, which the daemons need not wait for."""

    def _run() -> None:
        import uvicorn

        from mailctl.api.app import Tokens, create_app

        app = create_app(source, Tokens.from_env(), layout=layout, metrics=source)
        config = uvicorn.Config(
            app, host="0.0.0.0", port=port, log_level="warning", access_log=False, lifespan="off"
        )
        uvicorn.Server(config).run()

    threading.Thread(target=_run, name="api", daemon=True).start()


def _hard_exit_later(seconds: float) -> None:
    def _exit() -> None:
        output.emit(output.CONTROLLER, f"daemons did not stop within {seconds:.0f}s: exiting")
        os._exit(1)

    timer = threading.Timer(seconds, _exit)
    timer.daemon = True
    timer.start()


def cmd_run(args: argparse.Namespace) -> int:
    from mailctl.reconcile import Controller
    from mailctl.supervise import syslog
    from mailctl.watch.watcher import watch

    output.setup()
    layout = _layout(args)
    ctl = Controller(layout)
    output.listen(ctl.saw_line)
    if os.environ.get("MAILCTL_METRICS", "on").strip().lower() != "off":
        output.listen(ctl.metrics.observe_line)  # off: /metrics has the polled gauges only
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only record: no logging, no locks (the main thread may hold them right now).
        del frame
        received.append(signum)
        ctl.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    syslog.listen()
    try:
        ctl.start()
    except MailctlError as exc:
        print(f"mailctl: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    layout.settings_dir.mkdir(parents=True, exist_ok=True)
    watch(layout.settings_dir, ctl.settings_changed)
    layout.users.mkdir(parents=True, exist_ok=True)
    watch(layout.users, ctl.settings_changed)  # `mailctl user ...` changes
    layout.dkim.mkdir(parents=True, exist_ok=True, mode=0o750)
    watch(layout.dkim, ctl.settings_changed)  # the rotator's and `mailctl dkim ...` changes
    threading.Thread(target=ctl.dkim_loop, name="dkim", daemon=True).start()
    _serve_api(ctl, args.api_port, layout)
    output.emit(output.CONTROLLER, "controller running")
    ctl.run(on_stop=lambda drain: _hard_exit_later(HARD_EXIT_AFTER + drain))
    if received:
        output.emit(output.CONTROLLER, f"stopped on {signal.Signals(received[0]).name}")
    return 0


def _fail(exc: MailctlError) -> int:
    print(f"mailctl: {exc}", file=sys.stderr)
    return 2


def _json(items: object) -> None:
    """A model or a list of models, as the API answers it."""
    from pydantic import BaseModel, TypeAdapter

    if isinstance(items, BaseModel):
        print(items.model_dump_json(indent=2))
    else:
        print(TypeAdapter(type(items)).dump_json(items, indent=2).decode())


def cmd_check(args: argparse.Namespace) -> int:
    """The same inputs, plan, stage and validate as `run`, into a scratch directory; with
    a file (or - for stdin) that file's text instead of the live settings file."""
    from mailctl.ops import config

    layout = _layout(args)
    if args.file == "-":
        result = config.check_text(layout, sys.stdin.read())
    elif args.file:
        result = config.check_file(layout, Path(args.file))
    else:
        result = config.check_file(layout)
    if not result.ok:
        print(f"mailctl: {result.error}", file=sys.stderr)
        return 2
    print(f"settings OK: {result.hostname}, {result.users} users, {result.aliases} aliases")
    return 0


def _api(args: argparse.Namespace, path: str, token: bool = True) -> tuple[int, bytes]:
    """GET the running controller's API on loopback; (status, body). The token is the
    container's own (env or _FILE), so `docker compose exec` needs nothing more."""
    from mailctl.api.app import Tokens

    url = f"http://127.0.0.1:{args.api_port}{path}"
    request = urllib.request.Request(url)
    keys = Tokens.from_env()
    if token and (keys.read or keys.admin):
        request.add_header("Authorization", f"Bearer {keys.read or keys.admin}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 (loopback http)
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MailctlError(
            f"the controller's API does not answer on {url} ({reason}); is the appliance starting?"
        ) from None


def cmd_status(args: argparse.Namespace) -> int:
    try:
        _, body = _api(args, "/readyz", token=False)
        data = json.loads(body)
    except MailctlError as exc:
        return _fail(exc)
    except ValueError:
        return _fail(MailctlError("/readyz did not answer with JSON"))
    print(json.dumps(data, indent=2))
    return 0 if data.get("ready") else 1


def cmd_logs(args: argparse.Namespace) -> int:
    """The controller's last log lines (its ring buffer), through the API."""
    from urllib.parse import urlencode

    query = {"limit": str(args.limit)} | ({"daemon": args.daemon} if args.daemon else {})
    try:
        code, body = _api(args, f"/logs?{urlencode(query)}")
    except MailctlError as exc:
        return _fail(exc)
    if code != 200:
        return _fail(MailctlError(f"/logs answered {code}: {body.decode(errors='replace')}"))
    for line in json.loads(body):
        print(f"{line['daemon']}: {line['message']}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    try:
        code, body = _api(args, "/metrics")
    except MailctlError as exc:
        return _fail(exc)
    if code != 200:
        return _fail(MailctlError(f"/metrics answered {code}"))
    sys.stdout.write(body.decode())
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    from mailctl.ops import mailqueue

    try:
        result = mailqueue.lookup(args.table, args.key)
    except MailctlError as exc:
        return _fail(exc)
    if not result.found:
        print(f"{args.key}: not found in {args.table}", file=sys.stderr)
        return 1
    print(result.value)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from mailctl.ops import mailqueue
    from mailctl.ops.models import QueueFilter

    try:
        if args.action == "list":
            f = QueueFilter(
                queue=args.queue, sender=args.sender, recipient=args.recipient, min_age=args.min_age
            )
            _json(mailqueue.list_queue(f))
        elif args.action == "show":
            print(mailqueue.show(args.id, full=args.full).text, end="")
        elif args.action == "flush":
            mailqueue.flush()
        else:
            if not args.id:
                raise MailctlError(f"queue {args.action} needs a queue ID or ALL")
            out = mailqueue.act(args.action, args.id)
            if out:
                print(out)
    except MailctlError as exc:
        return _fail(exc)
    return 0


def cmd_mailbox(args: argparse.Namespace) -> int:
    from mailctl.ops import accounts

    layout = _layout(args)
    try:
        if args.action == "list":
            for m in accounts.list_mailboxes(layout):
                use = f"{m.used_kib} KiB" if m.used_kib is not None else "-"
                if m.limit_kib:
                    use += f" of {m.limit_kib} KiB"
                gone = "" if m.user else " (no such user any more)"
                print(f"{m.address}{gone}\t{use}")
            return 0
        if not args.address:
            raise MailctlError("mailbox purge needs an address")
        accounts.purge_mailbox(layout, args.address)
    except MailctlError as exc:
        return _fail(exc)
    print(f"purged the mailbox of {args.address}")
    return 0


def _read_password(confirm: bool) -> str:
    """From the terminal (asked twice when setting one), else one line of stdin."""
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if confirm and getpass.getpass("again: ") != password:
            raise MailctlError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password or "\x00" in password:
        raise MailctlError("empty password")
    return password


def cmd_user(args: argparse.Namespace) -> int:
    """Users besides the settings file (FEATURES S4); the settings file's stay there."""
    from pydantic import SecretStr

    from mailctl.ops import accounts
    from mailctl.ops.models import NewUser

    layout = _layout(args)
    try:
        if args.action == "list":
            for u in accounts.list_users(layout):
                print(f"{u.address}\t{u.source}")
            return 0
        if not args.address:
            raise MailctlError(f"user {args.action} needs an address")
        address = args.address.lower()
        local = mechanism(load_settings(layout.settings_file).sasl.mechanism).local_passwords
        if args.action == "test":
            result = accounts.test_login(layout, address, _read_password(False), args.service)
            print(
                f"{address}: login {'OK' if result.ok else 'refused'} "
                f"({result.mechanism}, {args.service})"
            )
            return 0 if result.ok else 1
        if args.action == "add":
            password = _read_password(True) if local else ""
            accounts.add_user(layout, NewUser(address=address, password=SecretStr(password)))
            print(f"added {address}")
        elif args.action == "passwd":
            accounts.set_password(layout, address, _read_password(True))
            print(f"password changed for {address}")
        else:
            print(accounts.delete_user(layout, address, purge=args.purge))
    except MailctlError as exc:
        return _fail(exc)
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    """Aliases besides the settings file; the settings file's stay there."""
    from mailctl.ops import accounts
    from mailctl.ops.models import NewAlias

    layout = _layout(args)
    try:
        if args.action == "list":
            for a in accounts.list_aliases(layout):
                print(f"{a.address}\t{', '.join(a.targets)}\t{a.source}")
            return 0
        if not args.address:
            raise MailctlError(f"alias {args.action} needs an address")
        if args.action == "add":
            if not args.targets:
                raise MailctlError("alias add needs one target or more")
            entry = accounts.add_alias(layout, NewAlias(address=args.address, targets=args.targets))
            print(f"added {entry.address} -> {', '.join(entry.targets)}")
        else:
            accounts.delete_alias(layout, args.address)
            print(f"deleted the alias {args.address.lower()}")
    except MailctlError as exc:
        return _fail(exc)
    return 0


def cmd_domain(args: argparse.Namespace) -> int:
    from mailctl.ops import accounts

    try:
        for d in accounts.list_domains(_layout(args)):
            print(f"{d.name}\t{d.kind}")
    except MailctlError as exc:
        return _fail(exc)
    return 0


def cmd_dkim(args: argparse.Namespace) -> int:
    """DKIM keys: their states and public records; rotate or revoke one by hand."""
    from mailctl.ops import dns

    layout = _layout(args)
    try:
        if args.action == "list":
            for k in dns.list_keys(layout):
                made = time.strftime("%Y-%m-%d", time.gmtime(k.created))
                print(f"{k.domain}\t{k.selector}\t{k.state}\tmade {made}\t{k.algorithm}")
            return 0
        if not args.domain:
            raise MailctlError(f"dkim {args.action} needs a domain")
        if args.action == "rotate":
            made_keys = dns.rotate(layout, args.domain)
            print(
                f"{args.domain.lower()}: new key {', '.join(k.selector for k in made_keys)}; "
                "publish it (mailctl dns), it signs once the domain's name servers answer with it"
            )
        else:
            if not args.selector:
                raise MailctlError("dkim revoke needs a domain and a selector")
            print(dns.revoke(layout, args.domain, args.selector))
    except MailctlError as exc:
        return _fail(exc)
    return 0


def cmd_dns(args: argparse.Namespace) -> int:
    """What to publish, as zone-file lines (or JSON)."""
    from mailctl.ops import dns

    try:
        found = dns.records(_layout(args))
    except MailctlError as exc:
        return _fail(exc)
    if args.json:
        _json(found)
    else:
        print(dns.zone_text(found), end="")
    return 0


def cmd_selfcheck(args: argparse.Namespace) -> int:
    """The DNS self-check; exit status 1 when a check fails or cannot tell."""
    from mailctl.ops import selfcheck

    try:
        report = selfcheck.checks(_layout(args), address=args.address, refresh=args.refresh)
    except MailctlError as exc:
        return _fail(exc)
    if args.json:
        _json(report)
    else:
        print(selfcheck.text(report), end="")
    return 0 if report.state in ("ok", "warn") else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailctl", description=__doc__)
    parser.add_argument(
        "--settings-dir",
        type=Path,
        default=None,
        help="directory holding settings.yaml (default: $MAILCTL_SETTINGS_DIR or /config)",
    )
    parser.add_argument("--api-port", type=int, default=8080)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the appliance (the container's main process)")
    ck = sub.add_parser(
        "check", help="validate the settings the way `run` would (nothing goes live)"
    )
    ck.add_argument(
        "file", nargs="?", default="", help="a settings file to check instead, or - for stdin"
    )
    sub.add_parser("status", help="show readiness from the running controller")
    lg = sub.add_parser("logs", help="the controller's last log lines (from the running API)")
    lg.add_argument("--limit", type=int, default=100)
    lg.add_argument("--daemon", default="", help="only this daemon's lines, e.g. postfix")
    sub.add_parser("metrics", help="the Prometheus metrics (from the running API)")
    lk = sub.add_parser("lookup", help="look a key up in a live Postfix table (postmap -q)")
    lk.add_argument("table", help="table name, e.g. virtual, aliases, client_access.cidr")
    lk.add_argument("key")
    qu = sub.add_parser(
        "queue", help="the mail queue: list, show, hold, release, requeue, delete, flush"
    )
    qu.add_argument(
        "action", choices=["list", "show", "hold", "release", "requeue", "delete", "flush"]
    )
    qu.add_argument("id", nargs="?", default="", help="a queue ID, or ALL")
    qu.add_argument("--queue", choices=["active", "deferred", "hold", "incoming", "maildrop"])
    qu.add_argument("--sender", help="list: part of the envelope sender")
    qu.add_argument("--recipient", help="list: part of a recipient address")
    qu.add_argument("--min-age", type=int, help="list: seconds in the queue, at least")
    qu.add_argument("--full", action="store_true", help="show: the body too")
    mb = sub.add_parser(
        "mailbox",
        help="Cyrus mailboxes: list, or purge one whose user was "
        "removed from the settings (deletes its mail)",
    )
    mb.add_argument("action", choices=["list", "purge"])
    mb.add_argument("address", nargs="?", default="")
    us = sub.add_parser(
        "user",
        help="users besides the settings file: add, delete, list, "
        "passwd, test (passwords are read from the terminal or stdin)",
    )
    us.add_argument("action", choices=["add", "delete", "list", "passwd", "test"])
    us.add_argument("address", nargs="?", default="")
    us.add_argument("--purge", action="store_true", help="delete: remove the mail too")
    us.add_argument(
        "--service",
        default="smtp",
        choices=["smtp", "imap", "pop"],
        help="test: the service to log in to",
    )
    al = sub.add_parser("alias", help="aliases besides the settings file: add, delete, list")
    al.add_argument("action", choices=["add", "delete", "list"])
    al.add_argument("address", nargs="?", default="", help="address, or @domain (catch-all)")
    al.add_argument("targets", nargs="*", help="add: where mail for it goes")
    sub.add_parser("domain", help="the domains this server handles, and how")
    dk = sub.add_parser("dkim", help="DKIM keys: list, rotate DOMAIN, revoke DOMAIN SELECTOR")
    dk.add_argument("action", choices=["list", "rotate", "revoke"])
    dk.add_argument("domain", nargs="?", default="")
    dk.add_argument("selector", nargs="?", default="")
    dn = sub.add_parser("dns", help="the DNS records each domain needs, in zone-file syntax")
    dn.add_argument("--json", action="store_true")
    sc = sub.add_parser(
        "selfcheck",
        help="does the world see this server as a good sender? MX, reverse DNS, SPF, DKIM, "
        "DMARC, blocklists: ok, warn, fail or unknown each (exit 1 on fail or unknown)",
    )
    sc.add_argument("--json", action="store_true")
    sc.add_argument("--address", help="the address mail leaves from (default: selfcheck.address)")
    sc.add_argument("--refresh", action="store_true", help="ask DNS again (at most once a minute)")
    args = parser.parse_args(argv)
    commands = {
        "run": cmd_run,
        "check": cmd_check,
        "status": cmd_status,
        "lookup": cmd_lookup,
        "queue": cmd_queue,
        "mailbox": cmd_mailbox,
        "user": cmd_user,
        "alias": cmd_alias,
        "domain": cmd_domain,
        "dkim": cmd_dkim,
        "dns": cmd_dns,
        "selfcheck": cmd_selfcheck,
        "logs": cmd_logs,
        "metrics": cmd_metrics,
    }
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
