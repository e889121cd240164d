"""Issue 2: `docker compose down` and `up` again keep users, mail and the queue.

Runs the repository's own compose.yaml (with docker compose v2 or
docker-compose v1, whichever is here) on free ports and a project name of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.compose import Project
from tests.e2e.data import ALICE, BASE_FILES, PASSWORDS, base_settings
from tests.e2e.util import wait_until


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    settings_dir = tmp_path / "config"
    settings_dir.mkdir()
    (settings_dir / "settings.yaml").write_text(yaml.safe_dump(base_settings()))
    for name, content in BASE_FILES.items():
        (settings_dir / name).write_text(content)
    proj = Project(settings_dir)
    try:
        yield proj
    finally:
        proj.down()


def test_down_and_up_keep_users_mail_and_queue(project: Project) -> None:
    project.compose("up", "-d", "--no-build")
    app = project.appliance()
    delivered, code, _ = app.send(ALICE[0], "bob@example.com", port=587, login=ALICE)
    assert code == 250
    # The outside is unreachable (DNS on loopback only): this one is deferred.
    _, code, _ = app.send(ALICE[0], "someone@example.net", port=587, login=ALICE)
    assert code == 250
    app.wait_delivered("bob@example.com", PASSWORDS["bob@example.com"], delivered)
    wait_until(
        lambda: any(m["queue_name"] == "deferred" for m in app.queue()),
        30,
        lambda: f"a deferred message: {app.queue()}",
        interval=0.2,
    )
    queue_before = {m["queue_id"] for m in app.queue()}

    project.compose("down")
    project.compose("up", "-d", "--no-build")
    app = project.appliance()

    assert delivered in app.message_ids("bob@example.com", PASSWORDS["bob@example.com"])
    assert {m["queue_id"] for m in app.queue()} == queue_before
    client = app.smtp(587, login=ALICE)  # the users still log in
    client.quit()
    assert app.readyz()[1]["ready"] is True
