"""The command line: `mailctl run` is the container's main process; `check`
validates a settings file the way `run` would (nothing goes live); the rest
are operator tools (status, lookup, queue, mailbox, user).

Side effects: `run` owns the container (daemons, /dev/log, the API).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from mailctl.errors import MailctlError
from mailctl.layout import CYRUS_ADMIN, CYRUS_ADMIN_SOCKET, SASLAUTHD_MUX, Layout
from mailctl.settings.loader import load_settings
from mailctl.settings.mechanisms import mechanism
from mailctl.supervise import output

if TYPE_CHECKING:
    from mailctl.api.app import StatusSource

# After SIGTERM the daemons get this long to stop (Supervisor.stop_all's deadline);
# past it (plus a margin) the controller exits anyway rather than wait for SIGKILL.
HARD_EXIT_AFTER = 25.0


def _layout(args: argparse.Namespace) -> Layout:
    return Layout.from_env(args.settings_dir)


def _serve_api(source: StatusSource, port: int) -> None:
    """Serve the API from a thread of its own; importing FastAPI and uvicorn takes most
    of a second, which the daemons need not wait for."""

    def _run() -> None:
        import uvicorn

        from mailctl.api.app import admin_token, create_app

        app = create_app(source, admin_token())
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
    _serve_api(ctl, args.api_port)
    output.emit(output.CONTROLLER, "controller running")
    ctl.run(on_stop=lambda: _hard_exit_later(HARD_EXIT_AFTER))
    if received:
        output.emit(output.CONTROLLER, f"stopped on {signal.Signals(received[0]).name}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """The same inputs, plan, stage and validate as `run`, into a scratch directory."""
    from mailctl.apply import inputs
    from mailctl.apply.transaction import Transaction

    layout = _layout(args)
    try:
        gathered = inputs.gather(layout, save=False)
        Transaction(gathered, layout).check()
    except MailctlError as exc:
        print(f"mailctl: {exc}", file=sys.stderr)
        return 2
    settings = gathered.settings
    print(
        f"settings OK: {settings.hostname}, {len(settings.users)} users, "
        f"{len(settings.aliases)} aliases"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    url = f"http://127.0.0.1:{args.api_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"mailctl: the controller's API does not answer on {url} ({reason}); "
            "is the appliance starting?",
            file=sys.stderr,
        )
        return 2
    try:
        data = json.loads(body)
    except ValueError:
        print(f"mailctl: {url} did not answer with JSON", file=sys.stderr)
        return 2
    print(json.dumps(data, indent=2))
    return 0 if data.get("ready") else 1


def cmd_lookup(args: argparse.Namespace) -> int:
    from mailctl.apply import postfix_ops

    try:
        value = postfix_ops.lookup(args.table, args.key)
    except MailctlError as exc:
        print(f"mailctl: {exc}", file=sys.stderr)
        return 2
    if value is None:
        print(f"{args.key}: not found in {args.table}", file=sys.stderr)
        return 1
    print(value)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from mailctl.apply import postfix_ops

    try:
        if args.action == "list":
            print(json.dumps(postfix_ops.queue(), indent=2))
        elif args.action == "show":
            print(postfix_ops.show(args.id), end="")
        elif args.action == "flush":
            postfix_ops.flush()
        else:
            if not args.id:
                print(f"mailctl: queue {args.action} needs a queue ID or ALL", file=sys.stderr)
                return 2
            out = postfix_ops.act(args.action, args.id)
            if out:
                print(out)
    except MailctlError as exc:
        print(f"mailctl: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_mailbox(args: argparse.Namespace) -> int:
    from mailctl.apply import mailboxes, secrets, users

    layout = _layout(args)
    try:
        password = secrets.admin_password(layout)
        settings = load_settings(layout.settings_file)
        known = {u.address for u in settings.users} | set(users.read_store(layout.store))
        if args.action == "list":
            for address in mailboxes.existing(CYRUS_ADMIN_SOCKET, CYRUS_ADMIN, password):
                print(address if address in known else f"{address} (no such user any more)")
            return 0
        if not args.address:
            print("mailctl: mailbox purge needs an address", file=sys.stderr)
            return 2
        if args.address in known:
            print(
                f"mailctl: {args.address} is still a user; delete the user first", file=sys.stderr
            )
            return 2
        mailboxes.purge(CYRUS_ADMIN_SOCKET, CYRUS_ADMIN, password, args.address)
    except MailctlError as exc:
        print(f"mailctl: {exc}", file=sys.stderr)
        return 2
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


def _wait_mailbox_map(address: str, present: bool, timeout: float = 30.0) -> None:
    """Until the controller has applied the store change (the user is live, or gone)."""
    import time

    from mailctl.apply import postfix_ops

    deadline = time.monotonic() + timeout
    while (postfix_ops.lookup("vmailbox", address) is not None) != present:
        if time.monotonic() > deadline:
            raise MailctlError(
                "the controller has not applied the change yet; see `mailctl status`"
            )
        time.sleep(0.2)


def cmd_user(args: argparse.Namespace) -> int:
    """Users of the user store (FEATURES S4); users of the settings file stay there."""
    from mailctl.apply import mailboxes, secrets, users
    from mailctl.settings.loader import with_cli_users

    layout = _layout(args)
    try:
        settings = load_settings(layout.settings_file)
        mech = mechanism(settings.sasl.mechanism)
        in_file = {u.address for u in settings.users}
        if args.action == "list":
            store = users.read_store(layout.store)
            for address in sorted(in_file | set(store)):
                print(f"{address}\t{'settings' if address in in_file else 'cli'}")
            return 0
        if not args.address:
            raise MailctlError(f"user {args.action} needs an address")
        address = args.address.lower()
        if args.action == "test":
            ok = users.check_login(SASLAUTHD_MUX, address, _read_password(False), args.service)
            print(f"{address}: login {'OK' if ok else 'refused'} ({mech.name}, {args.service})")
            return 0 if ok else 1
        if address in in_file:
            raise MailctlError(f"{address} is a user of the settings file; change it there")
        # Passwords of rimap and ldap users live on those servers: only the mailbox here.
        local = mech.local_passwords
        with users.locked(layout.users):  # the controller's transaction holds it too
            store = users.read_store(layout.store)
            if args.action == "add" and address in store:
                raise MailctlError(f"{address} exists; use `mailctl user passwd`")
            if args.action != "add" and address not in store:
                raise MailctlError(f"{address} is not a user of the user store")
            if args.action in ("add", "passwd"):
                password = _read_password(True) if local else ""
                store[address] = secrets.hash_password(password) if local else ""
                with_cli_users(settings, store)  # the same rules as for the settings file
                if mech.store == "sasldb":
                    users.sasldb_set(layout.sasldb, address, password)
            else:  # delete
                del store[address]
                users.sasldb_delete(layout.sasldb, address)
            users.write_store(store, layout.store)
        if args.action != "passwd":
            _wait_mailbox_map(address, present=args.action == "add")
        if args.action == "delete" and args.purge:
            mailboxes.purge(
                CYRUS_ADMIN_SOCKET, CYRUS_ADMIN, secrets.admin_password(layout), address
            )
    except MailctlError as exc:
        print(f"mailctl: {exc}", file=sys.stderr)
        return 2
    done = {"add": "added", "passwd": "password changed for", "delete": "deleted"}
    print(
        f"{done[args.action]} {address}"
        + (
            " (mail kept; `mailctl mailbox purge` removes it)"
            if args.action == "delete" and not args.purge
            else ""
        )
    )
    return 0


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
    sub.add_parser("check", help="validate the settings file and exit")
    sub.add_parser("status", help="show readiness from the running controller")
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
    args = parser.parse_args(argv)
    commands = {
        "run": cmd_run,
        "check": cmd_check,
        "status": cmd_status,
        "lookup": cmd_lookup,
        "queue": cmd_queue,
        "mailbox": cmd_mailbox,
        "user": cmd_user,
    }
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
