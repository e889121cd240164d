"""The apply transaction: stage -> validate -> swap, or nothing changes.

Side effects: writes revision directories and swaps the `current` link.
Reloading the daemons is the caller's post-action; if it fails the caller
swaps back with `rollback`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailctl.apply import files, validate
from mailctl.errors import ApplyError, MailctlError
from mailctl.render.bundle import Bundle


@dataclass(frozen=True)
class Result:
    revision: Path | None  # None: nothing changed
    previous: Path | None
    changed: frozenset[str] = field(default_factory=frozenset)
    timings: dict[str, float] = field(default_factory=dict)


def changed_paths(bundle: Bundle, live: Path | None) -> frozenset[str]:
    if live is None:
        return frozenset(bundle.files)
    old = files.read_tree(live, list(bundle.files))
    changed = {rel for rel, f in bundle.files.items() if old.get(rel) != f.content}
    return frozenset(changed)


def apply(bundle: Bundle, root: Path = files.ROOT, force: bool = False) -> Result:
    """Make `bundle` the live revision if it differs; ApplyError leaves the old one live."""
    t0 = time.monotonic()
    live = files.live_revision(root)
    changed = changed_paths(bundle, live)
    if not changed and not force:
        return Result(None, live)
    stage = files.new_revision_dir(root)
    timings: dict[str, float] = {}
    try:
        files.write_tree(stage, bundle.files)
        timings["stage"] = time.monotonic() - t0
        validate.stage(stage, bundle, None if live is None or force else changed, live)
        timings["validate"] = time.monotonic() - t0 - timings["stage"]
    except MailctlError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise ApplyError(f"the new settings were not applied: {exc}") from exc
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise ApplyError(f"the new settings were not applied: cannot write {exc}") from exc
    files.swap(stage, root)
    if live is not None:
        files.retire(live)
    files.prune(root)
    timings["total"] = time.monotonic() - t0
    return Result(stage, live, changed, timings)


def rollback(result: Result, root: Path = files.ROOT) -> None:
    """Point `current` back at the revision that was live before `result`."""
    if result.previous is not None:
        files.swap(result.previous, root)
    if result.revision is not None:
        shutil.rmtree(result.revision, ignore_errors=True)
