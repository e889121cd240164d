"""compose.edge.yaml as a project of its own (mailbox node and edges), for the e2e tests
and the bench. The compose network is made here and named external in an override, so
that a DNS peer can sit on it as the only upstream of Docker's resolver: lookups the
daemons make (SPF, blocklists) get an answer from it and never leave this machine."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import yaml

from tests.e2e import peers
from tests.e2e.appliance import Appliance
from tests.e2e.compose import REPO, Project, free_port
from tests.e2e.data import BASE_FILES


class Nodes:
    def __init__(self, proj: Project, settings_dir: Path, edges: tuple[str, ...]) -> None:
        self.proj = proj
        self.mailbox = proj.appliance("mailbox")
        self.edges = [self._edge(settings_dir, name) for name in edges]
        self.edge = self.edges[0]

    def _edge(self, settings_dir: Path, service: str) -> Appliance:
        client = docker.from_env()
        labels = [f"com.docker.compose.project={self.proj.name}"]
        labels.append(f"com.docker.compose.service={service}")
        container = client.containers.list(filters={"label": labels})[0]
        api = "EDGE_API_PORT" if service == "edge" else "EDGE2_API_PORT"
        smtp = self.proj.ports[25] if service == "edge" else self.proj.smtp2
        app = Appliance(container, settings_dir, {25: smtp, 8080: int(self.proj.env[api])})
        app.wait_ready()
        return app

    @staticmethod
    def queued(app: Appliance) -> int:
        code, out = app.exec("postqueue", "-j")
        assert code == 0, out
        return sum(1 for line in out.splitlines() if line.startswith("{"))

    def queued_at_edge(self) -> int:
        return self.queued(self.edge)


@contextlib.contextmanager
def running(
    client: docker.DockerClient,
    settings: dict[str, Any],
    settings_dir: Path,
    *,
    two_edges: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[Nodes]:
    settings_dir.mkdir(parents=True, exist_ok=True)
    (settings_dir / "settings.yaml").write_text(yaml.safe_dump(settings))
    for name, content in BASE_FILES.items():
        (settings_dir / name).write_text(content)
    with peers.network(client) as net:
        net.reload()
        subnet = net.attrs["IPAM"]["Config"][0]["Subnet"]
        records = ["A mx.sender.example 100.64.0.9"]
        with peers.running(client, peers.Dns, net, records=records) as dns:
            override = {
                "services": {s: {"dns": [dns.ip]} for s in ("mailbox", "edge", "edge2")},
                "networks": {"mail": {"external": True, "name": net.name}},
            }
            (settings_dir / "override.yaml").write_text(yaml.safe_dump(override))
            smtp2 = free_port()
            extra = {
                "EDGE_SUBNET": subnet,
                "EDGE_API_PORT": str(free_port()),
                "EDGE2_API_PORT": str(free_port()),
                "SMTP2_PORT": f"127.0.0.1:{smtp2}",
                **(env or {}),
            }
            compose_file = REPO / "compose.edge.yaml"
            proj = Project(settings_dir, compose_file, (settings_dir / "override.yaml",), extra)
            proj.smtp2 = smtp2
            try:
                profile = ["--profile", "two-edges"] if two_edges else []
                proj.compose(*profile, "up", "-d", "--no-build")
                yield Nodes(proj, settings_dir, ("edge", "edge2") if two_edges else ("edge",))
            finally:
                proj.down()
