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
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.models.containers
import yaml

from tests.e2e.util import LABEL, RUN_ID, wait_until

IMAGE = os.environ.get("MAILTEST_IMAGE", "mailserver:latest")
PORTS = (25, 465, 587, 143, 993, 110, 995, 8080)
HELO = "client.mailctl.test"


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

    def wait_ports(self, timeout: float = 20.0) -> None:
        """Learn the published host ports (Docker may pick new ones at each start)."""
        self.ports.clear()

        def known() -> bool:
            self.refresh_ports()
            return len(self.ports) == len(PORTS) or self.container.status == "exited"

        wait_until(known, timeout, "the published ports", interval=0.05)

    @property
    def ip(self) -> str:
        self.container.reload()
        nets = self.container.attrs["NetworkSettings"]["Networks"]
        return str(next(iter(nets.values()))["IPAddress"])

    def readyz(self) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.ports[8080]}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            self.container.reload()
            if self.container.status == "exited":
                raise AssertionError(f"appliance exited:\n{self.logs()[-3000:]}")
            code, body = self.readyz()
            return body if code == 200 else None

        return wait_until(
            ready,
            timeout,
            lambda: f"appliance not ready\n{self.logs()[-3000:]}",
            ignore=(OSError, ValueError, KeyError),
        )

    def logs(self) -> str:
        return str(self.container.logs().decode("utf-8", "replace"))

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

    def smtp(
        self,
        port: int = 587,
        login: tuple[str, str] | None = None,
        *,
        helo: str = HELO,
        timeout: float = 20,
    ) -> smtplib.SMTP:
        """A session after EHLO (and STARTTLS on 587, and AUTH when `login` is given)."""
        if port == 465:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                "127.0.0.1", self.ports[465], timeout=timeout, context=tls_context()
            )
        else:
            client = smtplib.SMTP("127.0.0.1", self.ports[port], timeout=timeout)
        try:
            client.ehlo(helo)
            if port == 587:
                client.starttls(context=tls_context())
                client.ehlo(helo)
            if login:
                client.login(*login)
        except BaseException:
            client.close()
            raise
        return client

    def rcpt(
        self,
        sender: str,
        to: str,
        *,
        port: int = 25,
        helo: str = HELO,
        login: tuple[str, str] | None = None,
    ) -> tuple[int, str]:
        """A new session's reply to MAIL FROM, or else to RCPT TO: (code, text).

        (0, why) when the session could not get that far (refused, dropped,
        Postfix reloading): a caller polling for a code simply tries again.
        """
        try:
            client = self.smtp(port, login, helo=helo)
        except (OSError, smtplib.SMTPException) as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        try:
            code, reply = client.mail(sender)
            if code == 250:
                code, reply = client.rcpt(to)
            return code, reply.decode("utf-8", "replace")
        except (OSError, smtplib.SMTPException) as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        finally:
            client.close()

    def send(
        self,
        sender: str,
        to: str,
        *,
        port: int = 25,
        helo: str = HELO,
        login: tuple[str, str] | None = None,
        subject: str = "test",
        body: str = "hello",
        timeout: float = 20,
    ) -> tuple[str, int, str]:
        """One message with a new Message-ID in a new session: (mid, code, text), where
        code is the first refusal (of HELO, MAIL, RCPT or DATA) or the reply after DATA
        (250: accepted). A session that breaks raises, as smtplib does."""
        mid, text = message(sender, to, subject, body)
        client = self.smtp(port, login, helo=helo, timeout=timeout)
        try:
            for code, reply in (client.mail(sender), client.rcpt(to)):
                if code >= 300:
                    return mid, code, reply.decode("utf-8", "replace")
            code, reply = client.data(text)
            return mid, code, reply.decode("utf-8", "replace")
        finally:
            client.close()

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
        return set(self.message_id_counts(user, password, port))

    def message_id_counts(self, user: str, password: str, port: int = 143) -> Counter[str]:
        """How many messages in user's INBOX carry each Message-ID (one FETCH for all)."""
        client = self.imap(user, password, port)
        try:
            client.select("INBOX", readonly=True)
            return fetch_message_ids(client, "1:*")
        finally:
            client.logout()

    def wait_delivered(self, user: str, password: str, mid: str, timeout: float = 30) -> None:
        wait_until(
            lambda: mid in self.message_ids(user, password),
            timeout,
            lambda: f"{mid} not delivered to {user}:\n{self.logs()[-3000:]}",
            interval=0.2,
        )

    def queue(self) -> list[dict[str, Any]]:
        code, out = self.exec("postqueue", "-j")
        assert code == 0, out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def pid_of(self, daemon: str) -> int:
        _, body = self.readyz()
        return int(body["daemons"][daemon]["pid"])


def fetch_message_ids(client: imaplib.IMAP4, which: str, *, uid: bool = False) -> Counter[str]:
    """Message-ID -> count over the messages `which` (a sequence set) of the selected box."""
    items = "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
    if uid:
        typ, data = client.uid("FETCH", which, items)
    else:
        typ, data = client.fetch(which, items)
    found: Counter[str] = Counter()
    if typ != "OK":
        return found
    for part in data:
        if isinstance(part, tuple):
            header = part[1].decode("utf-8", "replace")
            found.update(w.strip() for w in header.split(":", 1)[1:] if w.strip())
    return found


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
    options: Mapping[str, Any] | None = None,
) -> Appliance:
    """Run the image with `settings` (written to settings_dir, mounted at /config);
    with `wait`, return once /readyz says 200 (the container is removed if it never
    does). `options`: more keyword arguments of containers.run (restart_policy, tmpfs)."""
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
        labels={LABEL: RUN_ID},
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
        **(options or {}),
    )
    app = Appliance(container, settings_dir)
    try:
        app.wait_ports()
        if wait:
            app.wait_ready()
    except BaseException:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True, v=True)
        raise
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
