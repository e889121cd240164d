"""Run the integration tier inside the built image: one container, its pytest's verdict.

The image has Python (the controller's venv) but no pytest: pytest and its pure-Python
dependencies are copied from this interpreter into a scratch directory and mounted, with
the working tree's tests/ and controller/ (so the tests exercise the code being edited,
not the copy installed in the image). The container has no network and is removed after.
"""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.integration.conftest import IN_IMAGE

IMAGE = os.environ.get("MAILTEST_IMAGE", "mailserver:latest")
# Extra arguments for the pytest inside, e.g. MAILTEST_INTEGRATION_ARGS="-k tls -x".
EXTRA = shlex.split(os.environ.get("MAILTEST_INTEGRATION_ARGS", ""))
REPO = Path(__file__).resolve().parents[2]
PYTHON = "/opt/mailctl/bin/python"
TIMEOUT = 180.0
LABEL = "mailctl-integration"

pytestmark = pytest.mark.skipif(IN_IMAGE, reason="runs the tier from the host")


def copy_pytest(dest: Path) -> list[str]:
    """pytest and its dependencies (pure Python), as installed here, into `dest`."""
    todo: list[str] = ["pytest"]
    seen: list[str] = []
    while todo:
        dist = importlib.metadata.distribution(todo.pop())
        name = canonicalize_name(dist.metadata["Name"])
        if name in seen:
            continue
        seen.append(name)
        for f in dist.files or []:
            if f.parts[0] == ".." or "__pycache__" in f.parts:
                continue  # scripts in bin/, bytecode
            assert f.suffix not in (".so", ".pyd"), f"{name} is not pure Python: {f}"
            target = dest / f
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(str(dist.locate_file(f))), target)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_integration_tier_in_the_image(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """Green when every test inside passed; otherwise fails with the inside's report.
    Its lines are printed as they come with `pytest -s` (no capture)."""
    live = pytestconfig.getoption("capture") == "no"
    image = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
    assert image.returncode == 0, f"no image {IMAGE}: build it (make image)"
    pylib = tmp_path / "pylib"
    copy_pytest(pylib)
    pylib.chmod(0o755)
    name = f"{LABEL}-{uuid.uuid4().hex[:8]}"
    mounts = {
        REPO / "tests": "/src/tests",
        REPO / "controller" / "mailctl": "/src/controller/mailctl",
        REPO / "config": "/src/config",
        REPO / "pytest.ini": "/src/pytest.ini",
        pylib: "/opt/pylib",
    }
    argv = ["docker", "run", "--rm", "--name", name, "--label", LABEL, "--network", "none"]
    for src, dst in mounts.items():
        argv += ["-v", f"{src}:{dst}:ro"]
    argv += ["-e", "MAILCTL_IN_IMAGE=1", "-e", "PYTHONPATH=/opt/pylib:/src/controller"]
    argv += ["-e", "PYTHONDONTWRITEBYTECODE=1", "-w", "/src", "--entrypoint", PYTHON, IMAGE]
    argv += ["-m", "pytest", "/src/tests/integration", "-q", "-rfEs", "-p", "no:cacheprovider"]
    argv += ["--color=yes" if sys.stdout.isatty() else "--color=no", *EXTRA]

    lines: list[str] = []
    timed_out = threading.Event()

    def stop() -> None:  # a hang inside prints nothing: end it from outside
        timed_out.set()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)

    timer = threading.Timer(TIMEOUT, stop)
    timer.start()
    try:
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if live:
                    print(line, end="", flush=True)
                lines.append(line)
            rc = proc.wait()
    finally:
        timer.cancel()
    if timed_out.is_set():
        pytest.fail(f"the tier took over {TIMEOUT:.0f} s:\n{''.join(lines)}", pytrace=False)
    if rc != 0:
        pytest.fail(
            f"tests inside {IMAGE} failed (pytest exit {rc}):\n{''.join(lines)}", pytrace=False
        )
