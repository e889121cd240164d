"""The integration tier: the controller's apply code against the daemons' own tools.

Its tests run inside the built image (they need postconf, cyr_info, saslpasswd2...),
one container for the whole tier. On the host only test_in_image.py is collected: it
starts that container and reports what the tests inside it said.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_IMAGE = os.environ.get("MAILCTL_IN_IMAGE") == "1"
RUNNER = "test_in_image.py"

if IN_IMAGE:
    collect_ignore = [RUNNER]
else:
    collect_ignore = [p.name for p in Path(__file__).parent.glob("test_*.py") if p.name != RUNNER]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def root() -> Iterator[Path]:
    """A scratch directory that the daemons' users can walk (fetchmail reads its rc file
    as user fetchmail; pytest's own tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="mailctl-it-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
