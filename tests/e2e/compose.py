"""The repository's compose.yaml run as a project of its own, on free ports (docker
compose v2 or docker-compose v1, whichever is here). Used by e2e tests and the bench."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import docker

from tests.e2e.appliance import IMAGE, Appliance

REPO = Path(__file__).resolve().parents[2]
FILES = [
    "-f",
    str(REPO / "compose.yaml"),
    "-f",
    str(Path(__file__).with_name("compose.offline.yaml")),
]


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
    def __init__(
        self,
        settings_dir: Path,
        compose_file: Path | None = None,
        overrides: tuple[Path, ...] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """compose_file: another compose file than the repository's, with `overrides`
        instead of the offline one; env: more variables for it."""
        self.name = f"mailtest{uuid.uuid4().hex[:8]}"
        self.smtp2 = 0  # a second edge's SMTP port (tests.e2e.edge_nodes)
        self.files = FILES
        if compose_file is not None:
            extra = FILES[2:] if overrides is None else [f"-f{o}" for o in overrides]
            self.files = ["-f", str(compose_file), *extra]
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
            **(env or {}),
        }

    def compose(self, *args: str) -> str:
        done = subprocess.run(
            [*compose_cmd(), "-p", self.name, *self.files, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def down(self) -> None:
        """`down -v --remove-orphans`, whatever state the project is in."""
        subprocess.run(
            [*compose_cmd(), "-p", self.name, *self.files, "down", "-v", "--remove-orphans"],
            env=self.env,
            capture_output=True,
            timeout=300,
            check=False,
        )

    def appliance(self, service: str | None = None) -> Appliance:
        client = docker.from_env()
        labels = [f"com.docker.compose.project={self.name}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        container = client.containers.list(filters={"label": labels})[0]
        app = Appliance(container, Path(self.env["MAIL_SETTINGS_DIR"]), dict(self.ports))
        app.wait_ready()
        return app
