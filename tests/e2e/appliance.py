"""Start the built image with Docker and talk to it over real sockets.

Every container gets `dns=127.0.0.1`, or the address of a test's own DNS peer
(which forwards nothing): nothing a test does can send a DNS query (or mail)
anywhere but this machine.
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import json
import os
import smtplib
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.models.containers
import yaml

IMAGE = os.environ.get("MAILTEST_IMAGE", "mailserver:latest")
PORTS = (25, 465, 587, 143, 993, 110, 995, 8080)
LABEL = "mailctl-test"


def bridge_gateway(client: docker.DockerClient) -> str:
    """Where connections to published ports come from (Docker's userland proxy)."""
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    if "Gateway" in config:
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the appliance's self-signed certificate
    return ctx


def crypt(password: str) -> str:
    return subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()


def message(sender: str, to: str, subject: str = "test", body: str = "hello") -> tuple[str, str]:
    """A message with a unique Message-ID (Cyrus drops repeated ones to one mailbox)."""
    mid = f"<{uuid.uuid4().hex}@mailctl.test>"
    text = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n\r\n{body}\r\n"
    )
    return mid, text


@dataclass
class Appliance:
    container: docker.models.containers.Container
    settings_dir: Path
    ports: dict[int, int] = field(default_factory=dict)

    # --- lifecycle -------------------------------------------------------

    def refresh_ports(self) -> None:
        self.container.reload()
        bound = self.container.attrs["NetworkSettings"]["Ports"] or {}
        for port in PORTS:
            entries = bound.get(f"{port}/tcp")
            if entries:
                self.ports[port] = int(entries[0]["HostPort"])

    @property
    def ip(self) -> str:
        self.container.reload()
        nets = self.container.attrs["NetworkSettings"]["Networks"]
        return next(iter(nets.values()))["IPAddress"]

    def readyz(self) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.ports[8080]}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status == "exited":
                raise AssertionError(f"appliance exited:\n{self.logs()[-3000:]}")
            try:
                code, body = self.readyz()
                last = body
                if code == 200:
                    return body
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready after {timeout}s: {last}\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.container.logs().decode("utf-8", "replace")

    def exec(self, *argv: str) -> tuple[int, str]:
        code, out = self.container.exec_run(list(argv))
        return code, out.decode("utf-8", "replace")

    def cli(self, *argv: str, stdin: str = "") -> tuple[int, str]:
        """`mailctl ARGV` inside the container, with `stdin` (passwords go there)."""
        done = subprocess.run(
            ["docker", "exec", "-i", self.container.id, "mailctl", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def can_login(self, user: str, password: str, port: int = 587) -> bool:
        """SMTP AUTH on `port` (after TLS): True on 235, False on 535."""
        client = self.smtp(port)
        try:
            client.login(user, password)
            return True
        except smtplib.SMTPAuthenticationError:
            return False
        finally:
            client.close()

    def write_settings(self, settings: dict[str, Any]) -> None:
        """Replace settings.yaml the way editors do: write a temp file, rename it."""
        tmp = self.settings_dir / ".settings.yaml.tmp"
        tmp.write_text(yaml.safe_dump(settings))
        os.replace(tmp, self.settings_dir / "settings.yaml")

    # --- protocols ---------------------------------------------------------

    def smtp(self, port: int = 587, login: tuple[str, str] | None = None) -> smtplib.SMTP:
        if port == 465:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                "127.0.0.1", self.ports[465], timeout=20, context=tls_context()
            )
            client.ehlo("client.mailctl.test")
        else:
            client = smtplib.SMTP("127.0.0.1", self.ports[port], timeout=20)
            client.ehlo("client.mailctl.test")
            if port == 587:
                client.starttls(context=tls_context())
                client.ehlo("client.mailctl.test")
        if login:
            try:
                client.login(*login)
            except BaseException:
                client.close()
                raise
        return client

    def imap(self, user: str, password: str, port: int = 143) -> imaplib.IMAP4:
        if port == 993:
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                "127.0.0.1", self.ports[993], ssl_context=tls_context(), timeout=20
            )
        else:
            client = imaplib.IMAP4("127.0.0.1", self.ports[143], timeout=20)
        try:
            if port != 993:
                client.starttls(ssl_context=tls_context())
            client.login(user, password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def message_ids(self, user: str, password: str, port: int = 143) -> set[str]:
        client = self.imap(user, password, port)
        try:
            client.select("INBOX", readonly=True)
            _, data = client.search(None, "ALL")
            ids: set[str] = set()
            for num in data[0].split():
                _, parts = client.fetch(num, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                header = parts[0][1].decode() if isinstance(parts[0], tuple) else ""
                ids.update(w.strip() for w in header.split(":", 1)[1:] if w.strip())
            return ids
        finally:
            client.logout()

    def wait_delivered(self, user: str, password: str, mid: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if mid in self.message_ids(user, password):
                return
            time.sleep(0.2)
        raise AssertionError(f"{mid} not delivered to {user}:\n{self.logs()[-3000:]}")

    def queue(self) -> list[dict[str, Any]]:
        code, out = self.exec("postqueue", "-j")
        assert code == 0, out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def pid_of(self, daemon: str) -> int:
        _, body = self.readyz()
        return int(body["daemons"][daemon]["pid"])


def start(
    client: docker.DockerClient,
    settings: dict[str, Any] | None,
    settings_dir: Path,
    *,
    network: str | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
    environment: dict[str, str] | None = None,
    extra_files: dict[str, str] | None = None,
    wait: bool = True,
    ipv6: bool = False,
    extra_hosts: dict[str, str] | None = None,
    dns: list[str] | None = None,
) -> Appliance:
    settings_dir.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        (settings_dir / "settings.yaml").write_text(yaml.safe_dump(settings))
    for name, content in (extra_files or {}).items():
        (settings_dir / name).write_text(content)
    mounts = {str(settings_dir): {"bind": "/config", "mode": "ro"}}
    mounts.update(volumes or {})
    container = client.containers.run(
        IMAGE,
        detach=True,
        dns=dns or ["127.0.0.1"],  # a test's own DNS peer, or nothing answers
        labels={LABEL: "1"},
        hostname="mail",
        network=network,
        volumes=mounts,
        environment=environment or {},
        extra_hosts=extra_hosts or {},
        ports={f"{p}/tcp": ("127.0.0.1", None) for p in PORTS},
        # Docker turns IPv6 off inside containers; a test of inet_protocols turns it on.
        sysctls={"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.lo.disable_ipv6": "0"}
        if ipv6
        else None,
    )
    app = Appliance(container, settings_dir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(app.ports) < len(PORTS):
        app.refresh_ports()
        if container.status == "exited":
            break
        time.sleep(0.05)
    if wait:
        app.wait_ready()
    return app


@contextlib.contextmanager
def running(
    client: docker.DockerClient, settings: dict[str, Any] | None, settings_dir: Path, **kwargs: Any
) -> Iterator[Appliance]:
    app = start(client, settings, settings_dir, **kwargs)
    try:
        yield app
    finally:
        with contextlib.suppress(docker.errors.APIError):
            app.container.remove(force=True, v=True)
