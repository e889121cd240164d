"""The command line: `mailctl run` is the container's main process; `check`
validates a settings file; `render` writes what the settings would produce.

Side effects: `run` owns the container (daemons, /dev/log, the API).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import urllib.request
from pathlib import Path
from types import FrameType

from mailctl.errors import MailctlError
from mailctl.settings.loader import load_settings, settings_path
from mailctl.supervise import output


def _serve_api(ctl: object, port: int) -> None:
    import uvicorn

    from mailctl.api.app import admin_token, create_app

    app = create_app(ctl, admin_token())  # type: ignore[arg-type]
    config = uvicorn.Config(app, host="0.0.0.0", port=port, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="api", daemon=True).start()


def cmd_run(args: argparse.Namespace) -> int:
    from mailctl.reconcile import Controller
    from mailctl.supervise import syslog
    from mailctl.watch.watcher import watch

    path = settings_path(args.settings_dir)
    ctl = Controller(path)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        output.emit("mailctl", f"signal {signal.Signals(signum).name}: stopping")
        ctl.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    syslog.listen()
    try:
        ctl.apply(first=True)
    except MailctlError as exc:
        print(f"mailctl: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    path.parent.mkdir(parents=True, exist_ok=True)
    watch(path.parent, ctl.settings_changed)
    _serve_api(ctl, args.api_port)
    output.emit("mailctl", "controller running")
    ctl.run()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(settings_path(args.settings_dir))
    except MailctlError as exc:
        print(f"mailctl: {exc}", file=sys.stderr)
        return 2
    print(f"settings OK: {settings.hostname}, {len(settings.users)} users, "
          f"{len(settings.aliases)} aliases")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{args.api_port}/readyz", timeout=5) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    print(json.dumps(json.loads(body), indent=2))
    return 0 if json.loads(body).get("ready") else 1


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
    from mailctl.apply import mailboxes, secrets
    from mailctl.render.cyrus import ADMIN, ADMIN_SOCKET

    try:
        password = secrets.admin_password()
        if args.action == "list":
            users = {u.address for u in load_settings(settings_path(args.settings_dir)).users}
            for address in mailboxes.existing(ADMIN_SOCKET, ADMIN, password):
                print(address if address in users else f"{address} (not in the settings)")
            return 0
        if not args.address:
            print("mailctl: mailbox purge needs an address", file=sys.stderr)
            return 2
        settings = load_settings(settings_path(args.settings_dir))
        if args.address in {u.address for u in settings.users}:
            print(f"mailctl: {args.address} is still a user in the settings; remove it there "
                  "first", file=sys.stderr)
            return 2
        mailboxes.purge(ADMIN_SOCKET, ADMIN, password, args.address)
    except MailctlError as exc:
        print(f"mailctl: {exc}", file=sys.stderr)
        return 2
    print(f"purged the mailbox of {args.address}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailctl", description=__doc__)
    parser.add_argument("--settings-dir", type=Path, default=None,
                        help="directory holding settings.yaml "
                             "(default: $MAILCTL_SETTINGS_DIR or /config)")
    parser.add_argument("--api-port", type=int, default=8080)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the appliance (the container's main process)")
    sub.add_parser("check", help="validate the settings file and exit")
    sub.add_parser("status", help="show readiness from the running controller")
    lk = sub.add_parser("lookup", help="look a key up in a live Postfix table (postmap -q)")
    lk.add_argument("table", help="table name, e.g. virtual, aliases, client_access.cidr")
    lk.add_argument("key")
    qu = sub.add_parser("queue", help="the mail queue: list, show, hold, release, requeue, "
                        "delete, flush")
    qu.add_argument("action", choices=["list", "show", "hold", "release", "requeue", "delete",
                                       "flush"])
    qu.add_argument("id", nargs="?", default="", help="a queue ID, or ALL")
    mb = sub.add_parser("mailbox", help="Cyrus mailboxes: list, or purge one whose user was "
                        "removed from the settings (deletes its mail)")
    mb.add_argument("action", choices=["list", "purge"])
    mb.add_argument("address", nargs="?", default="")
    args = parser.parse_args(argv)
    commands = {"run": cmd_run, "check": cmd_check, "status": cmd_status,
                "lookup": cmd_lookup, "queue": cmd_queue, "mailbox": cmd_mailbox}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
