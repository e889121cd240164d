"""Watch the settings *directory*: in-place writes, editor renames and Kubernetes
`..data` symlink swaps all arrive as some event in it. Debouncing and no-op
detection are the caller's (it compares the file's bytes).

Side effects: starts a watchdog observer thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver


class _Handler(FileSystemEventHandler):
    def __init__(self, notify: Callable[[], None]) -> None:
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        self.notify()


def watch(directory: Path, notify: Callable[[], None]) -> BaseObserver:
    observer = Observer()
    observer.schedule(_Handler(notify), str(directory), recursive=True)
    observer.daemon = True
    observer.start()
    return observer
