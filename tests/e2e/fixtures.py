"""Fixtures of tests against the built image, for tests/e2e and tests/faults conftests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
import pytest

from tests.e2e.appliance import IMAGE, Appliance, start
from tests.e2e.util import cleanup


class MakeAppliance(Protocol):
    def __call__(
        self, settings: dict[str, Any] | None, *, settings_dir: Path | None = None, **kw: Any
    ) -> Appliance: ...


@pytest.fixture(scope="session")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env()
    c.images.get(IMAGE)  # fails loudly if the image was not built (make image)
    yield c
    cleanup(c)  # what this run left behind, nothing of another run
    c.close()


@pytest.fixture
def make_appliance(client: docker.DockerClient, tmp_path: Path) -> Iterator[MakeAppliance]:
    """start(client, settings, settings_dir, **kw) as often as a test likes; every
    appliance made is removed (with its anonymous volumes) when the test ends.
    settings_dir defaults to a new directory under the test's tmp_path."""
    made: list[Appliance] = []

    def make(
        settings: dict[str, Any] | None, *, settings_dir: Path | None = None, **kw: Any
    ) -> Appliance:
        where = settings_dir or tmp_path / f"settings{len(made) or ''}"
        app = start(client, settings, where, **kw)
        made.append(app)
        return app

    yield make
    for app in made:
        with contextlib.suppress(docker.errors.APIError):
            app.container.remove(force=True, v=True)
