"""The mail queue and the live lookup tables, for the CLI and the admin API.

Queue IDs are long (enable_long_queue_ids): one that was listed cannot belong to
another message by the time it is acted on. Side effects: postqueue, postsuper,
postcat, postmap/postalias -q (argv only, never a shell).
"""

from __future__ import annotations

import re
import time
from typing import Any

from mailctl.apply import postfix_ops, proc
from mailctl.errors import NotFound
from mailctl.ops.models import (
    LookupResult,
    QueueAction,
    QueueEntry,
    QueueFilter,
    QueueMessage,
    QueueRecipient,
)

_COUNT = re.compile(r": (\d+) messages?$", re.MULTILINE)


def _entry(raw: dict[str, Any], now: float) -> QueueEntry:
    arrival = int(raw.get("arrival_time", 0))
    return QueueEntry(
        id=str(raw.get("queue_id", "")),
        queue=str(raw.get("queue_name", "")),
        arrival_time=arrival,
        age_seconds=max(0, int(now) - arrival),
        size=int(raw.get("message_size", 0)),
        sender=str(raw.get("sender", "")),
        recipients=[
            QueueRecipient(address=str(r.get("address", "")), delay_reason=r.get("delay_reason"))
            for r in raw.get("recipients", [])
            if isinstance(r, dict)
        ],
    )


def matches(entry: QueueEntry, f: QueueFilter) -> bool:
    if f.queue and entry.queue != f.queue:
        return False
    if f.sender and f.sender.lower() not in entry.sender.lower():
        return False
    if f.recipient and not any(f.recipient.lower() in r.address.lower() for r in entry.recipients):
        return False
    return not (f.min_age is not None and entry.age_seconds < f.min_age)


def list_queue(
    f: QueueFilter | None = None, run: proc.Runner = proc.run, now: float | None = None
) -> list[QueueEntry]:
    at = time.time() if now is None else now
    entries = [_entry(raw, at) for raw in postfix_ops.queue(run=run)]
    f = f or QueueFilter()
    return sorted((e for e in entries if matches(e, f)), key=lambda e: (e.arrival_time, e.id))


def show(queue_id: str, full: bool = False, run: proc.Runner = proc.run) -> QueueMessage:
    return QueueMessage(id=queue_id, text=postfix_ops.show(queue_id, full=full, run=run))


def act(action: QueueAction, queue_id: str, run: proc.Runner = proc.run) -> str:
    """hold, release, requeue or delete one message (or ALL); postsuper's own report."""
    out = postfix_ops.act(action, queue_id, run=run)
    # postsuper ends with "Placed on hold: 1 message" (or "Deleted: 0 messages")
    counts = [int(n) for n in _COUNT.findall(out)]
    if queue_id != "ALL" and not any(counts):
        raise NotFound(f"no message {queue_id} in the queue (or it is not in a queue for {action})")
    if action == "release":
        # postsuper -H puts it into the deferred queue, where it would wait for the next
        # queue run (minutes): a released message is wanted now.
        run(["postqueue", *(["-f"] if queue_id == "ALL" else ["-i", queue_id])],
            openable_output=True)  # fmt: skip
    return out


def flush(run: proc.Runner = proc.run) -> None:
    postfix_ops.flush(run=run)


def lookup(table: str, key: str, run: proc.Runner = proc.run) -> LookupResult:
    value = postfix_ops.lookup(table, key, run=run)
    return LookupResult(table=table, key=key, found=value is not None, value=value)
