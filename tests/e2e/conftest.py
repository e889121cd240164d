"""Fixtures for tests against the built image (real daemons, real sockets)."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from tests.e2e import peers
from tests.e2e.appliance import Appliance, running
from tests.e2e.data import BASE_FILES, base_settings
from tests.e2e.fixtures import MakeAppliance, client, make_appliance

__all__ = ["appliance", "auth_dns", "client", "fresh", "make_appliance", "remote_mta"]


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


@pytest.fixture(scope="module")
def remote_mta(client: docker.DockerClient) -> Iterator[peers.Mta]:
    """Postfix as remote.test's MX (tests.e2e.outside): takes every address there."""
    with peers.running(client, peers.Mta, domains=["remote.test"], hostname="mx.remote.test") as p:
        yield p


@pytest.fixture(scope="module")
def auth_dns(client: docker.DockerClient) -> Iterator[peers.Dns]:
    """The resolver of an appliance, and the authoritative server of example.com (records:
    tests.e2e.outside.publish)."""
    with peers.running(client, peers.Dns, records=[]) as peer:
        yield peer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
