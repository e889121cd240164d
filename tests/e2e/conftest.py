"""Fixtures for tests against the built image (real daemons, real sockets)."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from tests.e2e.appliance import Appliance, running
from tests.e2e.data import BASE_FILES, base_settings
from tests.e2e.fixtures import MakeAppliance, client, make_appliance

__all__ = ["appliance", "client", "fresh", "make_appliance"]


@pytest.fixture(scope="module")
def appliance(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    """One appliance shared by a module's tests (they must not change its settings)."""
    with running(
        client, base_settings(), tmp_path_factory.mktemp("settings"), extra_files=BASE_FILES
    ) as app:
        yield app


@pytest.fixture
def fresh(make_appliance: MakeAppliance) -> Appliance:
    """An appliance of the test's own, for tests that change settings or kill things."""
    return make_appliance(base_settings(), extra_files=BASE_FILES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
