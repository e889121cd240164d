"""Small helpers every container test shares: bounded polling and this run's label."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import docker
import docker.errors

T = TypeVar("T")

# Every container and network a test run makes carries LABEL=RUN_ID; the session
# removes exactly those, never what a concurrent run (another checkout) started.
LABEL = "mailctl-test"
RUN_ID = os.environ.get("MAILTEST_RUN_ID") or uuid.uuid4().hex[:12]


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    describe: str | Callable[[], str],
    *,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    After `timeout` seconds fail with `describe` (a callable is called then: logs
    are read only on failure) and the last value seen. Exceptions of the types in
    `ignore` count as a falsy answer.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = value = predicate()
            if value:
                return value
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            text = describe() if callable(describe) else describe
            raise AssertionError(f"not within {timeout:g}s: {text} (last: {last!r})")
        time.sleep(interval)


def cleanup(client: docker.DockerClient, run_id: str = RUN_ID) -> None:
    """Remove the containers (with their anonymous volumes) and networks of one run."""
    selector = {"label": f"{LABEL}={run_id}"}
    for container in client.containers.list(all=True, filters=selector):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True, v=True)
    for net in client.networks.list(filters=selector):
        with contextlib.suppress(docker.errors.APIError):
            net.remove()
    for volume in client.volumes.list(filters=selector):
        with contextlib.suppress(docker.errors.APIError):
            volume.remove(force=True)
