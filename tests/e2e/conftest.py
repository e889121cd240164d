"""Fixtures for tests against the built image (real daemons, real sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests.e2e.appliance import IMAGE, LABEL, Appliance, crypt, running

PASSWORDS = {"alice@example.com": "alice-secret-1", "bob@example.com": "bob-secret-2"}


@pytest.fixture(scope="session")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env()
    c.images.get(IMAGE)  # fails loudly if the image was not built (make image)
    yield c
    for leftover in c.containers.list(all=True, filters={"label": LABEL}):
        leftover.remove(force=True, v=True)
    c.close()


def base_settings(delay: int = 3) -> dict[str, Any]:
    return {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [
            {
                "address": "alice@example.com",
                "password_hash": crypt(PASSWORDS["alice@example.com"]),
            },
            {"address": "bob@example.com", "password_file": "/config/bob.pw", "quota_mb": 50},
        ],
        "aliases": {"team@example.com": ["alice@example.com", "bob@example.com"]},
        "greylisting": {"enabled": True, "delay": delay},
    }


@pytest.fixture(scope="module")
def appliance(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    """One appliance shared by a module's tests (they must not change its settings)."""
    settings_dir = tmp_path_factory.mktemp("settings")
    with running(
        client,
        base_settings(),
        settings_dir,
        extra_files={"bob.pw": PASSWORDS["bob@example.com"] + "\n"},
    ) as app:
        yield app


@pytest.fixture
def fresh(client: docker.DockerClient, tmp_path: Path) -> Iterator[Appliance]:
    """An appliance of the test's own, for tests that change settings or kill things."""
    with running(
        client,
        base_settings(),
        tmp_path / "settings",
        extra_files={"bob.pw": PASSWORDS["bob@example.com"] + "\n"},
    ) as app:
        yield app


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
