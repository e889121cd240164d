"""postgrey: command line and whitelists (FEATURES G1). Pure."""

from __future__ import annotations

from mailctl.layout import POSTGREY_DB
from mailctl.render import quoting as q
from mailctl.render.bundle import HEADER, LIVE, File, text
from mailctl.settings import Settings


def files(settings: Settings) -> dict[str, File]:
    g = settings.greylisting
    clients = [
        q.postgrey_entry(str(c), "greylisting.whitelist_clients") for c in g.whitelist_clients
    ]
    rcpts = [
        q.postgrey_entry(r.removeprefix("@"), "greylisting.whitelist_recipients")
        for r in g.whitelist_recipients
    ]
    return {
        "postgrey/whitelist_clients": text(HEADER + "".join(f"{c}\n" for c in clients)),
        "postgrey/whitelist_recipients": text(HEADER + "".join(f"{r}\n" for r in rcpts)),
    }


def argv(settings: Settings) -> tuple[str, ...]:
    g = settings.greylisting
    return (
        "/usr/sbin/postgrey",
        "--inet=127.0.0.1:10023",
        f"--delay={g.delay}",
        f"--dbdir={POSTGREY_DB}",
        "--user=postgrey",
        "--group=postgrey",
        "--whitelist-clients=/etc/postgrey/whitelist_clients",
        f"--whitelist-clients={LIVE}/postgrey/whitelist_clients",
        "--whitelist-recipients=/etc/postgrey/whitelist_recipients",
        f"--whitelist-recipients={LIVE}/postgrey/whitelist_recipients",
    )
