"""Issue 2: `docker compose down` and `up` again keep users, mail and the queue.

Runs the repository's own compose.yaml (with docker compose v2 or
docker-compose v1, whichever is here) on free ports and a project name of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.appliance import IMAGE, Appliance, message
from tests.e2e.conftest import PASSWORDS, base_settings

REPO = Path(__file__).resolve().parents[2]
FILES = [
    "-f",
    str(REPO / "compose.yaml"),
    "-f",
    str(Path(__file__).with_name("compose.offline.yaml")),
]
ALICE = ("alice@example.com", PASSWORDS["alice@example.com"])


def compose_cmd() -> list[str]:
    if (
        subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    assert shutil.which("docker-compose"), "neither docker compose nor docker-compose found"
    return ["docker-compose"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Project:
    def __init__(self, settings_dir: Path) -> None:
        self.name = f"mailtest{uuid.uuid4().hex[:8]}"
        self.ports = {p: free_port() for p in (25, 465, 587, 143, 993, 8080)}
        self.env = {
            **os.environ,
            "MAIL_IMAGE": IMAGE,
            "MAIL_SETTINGS_DIR": str(settings_dir),
            "SMTP_PORT": f"127.0.0.1:{self.ports[25]}",
            "SMTPS_PORT": f"127.0.0.1:{self.ports[465]}",
            "SUBMISSION_PORT": f"127.0.0.1:{self.ports[587]}",
            "IMAP_PORT": f"127.0.0.1:{self.ports[143]}",
            "IMAPS_PORT": f"127.0.0.1:{self.ports[993]}",
            "API_PORT": str(self.ports[8080]),
        }

    def compose(self, *args: str) -> str:
        done = subprocess.run(
            [*compose_cmd(), "-p", self.name, *FILES, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def appliance(self) -> Appliance:
        import docker

        client = docker.from_env()
        container = client.containers.list(
            filters={"label": f"com.docker.compose.project={self.name}"}
        )[0]
        app = Appliance(container, Path(self.env["MAIL_SETTINGS_DIR"]), dict(self.ports))
        app.wait_ready()
        return app


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    settings_dir = tmp_path / "config"
    settings_dir.mkdir()
    settings = base_settings()
    (settings_dir / "settings.yaml").write_text(yaml.safe_dump(settings))
    (settings_dir / "bob.pw").write_text(PASSWORDS["bob@example.com"] + "\n")
    proj = Project(settings_dir)
    try:
        yield proj
    finally:
        subprocess.run(
            [*compose_cmd(), "-p", proj.name, *FILES, "down", "-v", "--remove-orphans"],
            env=proj.env,
            capture_output=True,
            timeout=300,
            check=False,
        )


def test_down_and_up_keep_users_mail_and_queue(project: Project) -> None:
    project.compose("up", "-d", "--no-build")
    app = project.appliance()
    delivered, text = message(ALICE[0], "bob@example.com", "kept across down/up")
    _, text2 = message(ALICE[0], "someone@example.net", "stays in the queue")
    client = app.smtp(587, login=ALICE)
    client.sendmail(ALICE[0], ["bob@example.com"], text)
    # The outside is unreachable (DNS on loopback only): this one is deferred.
    client.sendmail(ALICE[0], ["someone@example.net"], text2)
    client.quit()
    app.wait_delivered("bob@example.com", PASSWORDS["bob@example.com"], delivered)
    deadline = time.monotonic() + 30
    while not any(m["queue_name"] == "deferred" for m in app.queue()):
        assert time.monotonic() < deadline, app.queue()
        time.sleep(0.2)
    queue_before = {m["queue_id"] for m in app.queue()}

    project.compose("down")
    project.compose("up", "-d", "--no-build")
    app = project.appliance()

    assert delivered in app.message_ids("bob@example.com", PASSWORDS["bob@example.com"])
    assert {m["queue_id"] for m in app.queue()} == queue_before
    client = app.smtp(587, login=ALICE)  # the users still log in
    client.quit()
    assert app.readyz()[1]["ready"] is True
