"""The settings file broken while running: the server keeps serving on its last good
config, /readyz says 503 naming the problem, and 200 again once the file is back.

- deleted: e.g. a volume or ConfigMap unmounted, or `rm` by mistake;
- directory: settings.yaml replaced by a directory (a bind mount of a missing
  host file makes one);
- dangling-symlink: a Kubernetes ..data swap pointing nowhere;
- not-utf8: bytes that cannot be read as text (a Latin-1 editor, a binary paste).

A chmod 000 is not among them: the controller runs as root and reads it anyway.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.data import BASE_FILES
from tests.e2e.fixtures import MakeAppliance
from tests.faults.harness import FaultRun, fault_settings


def deleted(path: Path) -> None:
    path.unlink()


def directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def dangling_symlink(path: Path) -> None:
    path.unlink()
    path.symlink_to("..data/settings.yaml")


def not_utf8(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")


BREAK: dict[str, Callable[[Path], None]] = {
    "deleted": deleted,
    "directory": directory,
    "dangling-symlink": dangling_symlink,
    "not-utf8": not_utf8,
}


@pytest.mark.parametrize("how", list(BREAK))
def test_settings_file_broken_while_running(make_appliance: MakeAppliance, how: str) -> None:
    app = make_appliance(fault_settings(), extra_files=BASE_FILES)
    path = app.settings_dir / "settings.yaml"
    good = path.read_bytes()
    revision = app.readyz()[1]["revision"]
    run = FaultRun(app, f"settings-{how}")
    run.start()
    run.inject(lambda: BREAK[how](path))

    def reported() -> bool:
        samples = run.readiness.since(run.t_fault)
        return any(s.code == 503 and s.problems for s in samples)

    reported_ok = run.settle_for(reported, 10)
    problems = next(
        (s.problems for s in run.readiness.since(run.t_fault) if s.code == 503), ["none"]
    )
    # Restore as an editor would: write a temporary file, rename it over.
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    tmp = path.with_name(".settings.yaml.tmp")
    tmp.write_bytes(good)
    os.replace(tmp, path)
    run.recovered(expect_unready=reported_ok, since=time.monotonic())
    figures = run.finish()
    figures.notes.append(f"problems reported: {problems}")
    print(f"    problems reported: {problems}")
    run.check_recovered()
    assert reported_ok, f"{how}: /readyz never reported the broken settings file"
    assert app.readyz()[1]["revision"] == revision, "the revision changed"
    run.check_readiness()
    run.check_delivery()
