"""The far ends of e2e tests: peer containers from images/peers (mailctl-peer:latest).

One image, four roles, each a container on a private Docker network:

- ``Dns``  unbound serving only the records a test gives (A/AAAA/MX/TXT/PTR/CNAME, ``*.zone``
  wildcards); anything else is NXDOMAIN, nothing is forwarded.
- ``Mta``  Postfix on 25/465/587 with SASL users; every accepted message lands in one maildir.
- ``Pop``  Dovecot POP3 (110/995) and IMAP (143/993) with passwd-file users.
- ``Ldap`` slapd with ``ou=people`` entries for the given users.

Every peer gets ``dns=["127.0.0.1"]`` and the label ``mailctl-test=<this run's id>`` (the
session removes this run's leftovers by it, and nothing of another run). Typical use::

    with peers.network(client) as net, \\
         peers.running(client, peers.Mta, net, users={"relay@remote.test": "pw"},
                       domains=["remote.test"]) as mta:
        ...  # point the appliance at mta.ip, then
        assert "relay@remote.test" in mta.sasl_usernames()
        [raw] = mta.wait_mails(1)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import socket
import tarfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network

from tests.e2e import util
from tests.e2e.util import LABEL, RUN_ID, wait_until

IMAGE = os.environ.get("MAILTEST_PEER_IMAGE", "mailctl-peer:latest")
PEERS_DIR = Path(__file__).resolve().parents[2] / "images" / "peers"
HASH_LABEL = "mailctl.peer.source"


# --------------------------------------------------------------------------- image


def source_hash() -> str:
    """A digest of what the image is built from (README changes do not count)."""
    digest = hashlib.sha256()
    for path in sorted(PEERS_DIR.iterdir()):
        if path.is_file() and path.suffix != ".md":
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_image(client: docker.DockerClient, *, force: bool = False) -> str:
    """Build IMAGE from images/peers unless it exists and matches the sources; returns its id.

    Needs the local base image debian:bookworm-slim (``make base``) and Debian's apt mirror.
    """
    wanted = source_hash()
    if not force:
        with contextlib.suppress(docker.errors.ImageNotFound):
            image = client.images.get(IMAGE)
            if (image.labels or {}).get(HASH_LABEL) == wanted:
                return str(image.id)
    try:
        image, _ = client.images.build(
            path=str(PEERS_DIR), tag=IMAGE, rm=True, forcerm=True, labels={HASH_LABEL: wanted}
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise RuntimeError(
            f"building {IMAGE} failed (is debian:bookworm-slim there? `make base`):\n{log[-4000:]}"
        ) from exc
    return str(image.id)


def reversed_ip(ip: str) -> str:
    """An IPv4 address as a DNS blocklist names it: 192.0.2.1 -> 1.2.0.192."""
    return ".".join(reversed(ip.split(".")))


# --------------------------------------------------------------------------- network


@contextlib.contextmanager
def network(
    client: docker.DockerClient, *, internal: bool = False, name: str | None = None
) -> Iterator[Network]:
    """A private bridge network for one test, removed afterwards (with whatever is still on it).

    ``internal=True`` cuts the network off from everything but its members and the host (the
    host still reaches container IPs), but Docker then publishes no ports of a container that
    is only on it: connect such a container to it with ``net.connect(container)`` instead.
    """
    net = client.networks.create(
        name or f"mailctl-peers-{uuid.uuid4().hex[:10]}",
        driver="bridge",
        internal=internal,
        labels={LABEL: RUN_ID},
    )
    try:
        yield net
    finally:
        with contextlib.suppress(docker.errors.APIError):
            net.reload()
            for member in net.containers:
                with contextlib.suppress(docker.errors.APIError):
                    net.disconnect(member, force=True)
        with contextlib.suppress(docker.errors.APIError):
            net.remove()


# --------------------------------------------------------------------------- peers


def tar_of(files: Mapping[str, str | bytes], mode: int = 0o644) -> bytes:
    """A tar stream of {relative path: content}, for Container.put_archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def users_file(users: Mapping[str, str]) -> str:
    """/peer/users: one ``user:password`` a line (passwords may hold commas, not newlines)."""
    for user, password in users.items():
        if ":" in user or "\n" in user + password or "," in user:
            raise ValueError(f"unusable peer user {user!r}")
    return "".join(f"{user}:{password}\n" for user, password in users.items())


class Peer:
    """One running peer container; subclasses add the role's helpers."""

    role: ClassVar[str] = ""
    tcp_ports: ClassVar[tuple[int, ...]] = ()

    def __init__(self, container: Container, network_name: str) -> None:
        self.container = container
        self.network_name = network_name

    # --- state ---------------------------------------------------------------

    @property
    def ip(self) -> str:
        self.container.reload()
        nets = self.container.attrs["NetworkSettings"]["Networks"]
        return str(nets[self.network_name]["IPAddress"])

    def logs(self) -> str:
        return str(self.container.logs().decode("utf-8", "replace"))

    def exec(self, *argv: str) -> tuple[int, str]:
        """Run argv inside the container; (exit code, stdout and stderr)."""
        code, out = self.container.exec_run(list(argv))
        return int(code), out.decode("utf-8", "replace")

    def check(self, *argv: str) -> str:
        """Like exec, but fails unless the command exits 0; its output."""
        code, out = self.exec(*argv)
        if code != 0:
            raise AssertionError(f"{self.role}: {' '.join(argv)} exited {code}:\n{out}")
        return out

    def put_files(
        self, files: Mapping[str, str | bytes], directory: str = "/peer", mode: int = 0o644
    ) -> None:
        """Write files (names relative to directory) into the container, started or not."""
        if not self.container.put_archive(directory, tar_of(files, mode)):
            raise AssertionError(f"{self.role}: cannot write {list(files)} to {directory}")

    def read_tree(self, path: str) -> dict[str, bytes]:
        """The regular files under path in the container, {name relative to path: content}."""
        try:
            stream, _ = self.container.get_archive(path)
        except docker.errors.NotFound:
            return {}
        data = b"".join(stream)
        out: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    out[member.name.split("/", 1)[-1]] = extracted.read()
        return out

    # --- lifecycle -----------------------------------------------------------

    def ready(self) -> bool:
        ip = self.ip
        for port in self.tcp_ports:
            try:
                with socket.create_connection((ip, port), timeout=0.5):
                    pass
            except OSError:
                return False
        return True

    def wait_ready(self, timeout: float = 20.0) -> None:

        def ready() -> bool:
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                raise AssertionError(f"{self.role} peer exited:\n{self.logs()[-3000:]}")
            return self.container.status == "running" and self.ready()

        wait_until(ready, timeout, lambda: f"{self.role} peer ready\n{self.logs()[-3000:]}")

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.container.remove(force=True, v=True)


class Dns(Peer):
    """unbound, authoritative for exactly the records given (see set_records)."""

    role = "dns"
    tcp_ports = (53,)

    def ready(self) -> bool:
        return super().ready() and bool(self.query("_serial.peer", "TXT"))

    def set_records(self, records: Iterable[str] | str) -> None:
        """Replace every record and wait until unbound serves the new set.

        One record a line: ``A name ip``, ``AAAA name ip6``, ``MX name prio host``,
        ``TXT name text`` (quoted or not; no single quotes), ``PTR ip name``, ``CNAME name
        target``; ``A *.zone ip`` answers for the zone and every name under it.
        """
        text = records if isinstance(records, str) else "\n".join(records)
        self.put_files({"zones": text + "\n"})
        self.check("peer-reload")

    def query(self, name: str, rtype: str = "A") -> list[str]:
        """The answers (``dig +short``) the peer gives for name/rtype, asked inside it."""
        code, out = self.exec("dig", "+short", "+time=1", "+tries=1", "@127.0.0.1", name, rtype)
        return [line.strip('"') for line in out.splitlines() if line] if code == 0 else []


MAILDIR_NAME = re.compile(r"^(\d+)\.(?:[^.]*?M(\d+))?")


class Mta(Peer):
    """Postfix: accepts for PEER_DOMAINS on 25, relays for SASL users, stores all in a maildir."""

    role = "mta"
    tcp_ports = (25, 465, 587)
    SINK = "/var/mail/sink"

    def mails(self) -> list[str]:
        """Every delivered message (with Return-Path, X-Original-To, Delivered-To), oldest first."""
        files: dict[str, bytes] = {}
        for sub in ("new", "cur"):
            files.update(self.read_tree(f"{self.SINK}/{sub}"))

        def order(name: str) -> tuple[int, int, str]:
            base = name.rsplit("/", 1)[-1]
            found = MAILDIR_NAME.match(base)
            if not found:
                return (0, 0, base)
            return (int(found.group(1)), int(found.group(2) or 0), base)

        return [files[name].decode("utf-8", "replace") for name in sorted(files, key=order)]

    def wait_mails(self, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Wait until at least count messages were delivered; all of them."""

        def enough() -> list[str]:
            found = self.mails()
            return found if len(found) >= count else []

        return wait_until(
            enough,
            timeout,
            lambda: f"{count} messages in the mta peer\n{self.logs()[-3000:]}",
            interval=0.2,
        )

    def clear(self) -> None:
        self.check("sh", "-c", f"rm -f {self.SINK}/new/* {self.SINK}/cur/*")

    def sasl_usernames(self) -> list[str]:
        """sasl_username= of every message accepted after SASL AUTH, in log order."""
        return re.findall(r"client=\S+, sasl_method=\S+, sasl_username=(\S+)", self.logs())


class Pop(Peer):
    """Dovecot: POP3 110/995, IMAP 143/993, plaintext logins allowed with or without TLS."""

    role = "pop"
    tcp_ports = (110, 143, 993, 995)

    def deliver(
        self, user: str, raw_message: str | bytes, sender: str = "sender@peer.test"
    ) -> None:
        """Put a message into user's INBOX (dovecot-lda)."""
        path = f"msg-{uuid.uuid4().hex}.eml"
        self.put_files({path: raw_message}, directory="/tmp", mode=0o600)
        self.check(
            "sh",
            "-c",
            'peer-deliver "$1" "$2" < "/tmp/$3"; rc=$?; rm -f "/tmp/$3"; exit $rc',
            "sh",
            user,
            sender,
            path,
        )

    def count(self, user: str) -> int:
        """How many messages user's INBOX holds."""
        return int(self.check("peer-count", user).split()[-1])


class Ldap(Peer):
    """slapd: ``uid=<user>,ou=people,<base>`` per user; anonymous search, bind as the user."""

    role = "ldap"
    tcp_ports = (389,)

    def __init__(self, container: Container, network_name: str) -> None:
        super().__init__(container, network_name)
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"] or [])
        self.base = env.get("PEER_LDAP_BASE", "dc=example,dc=com")
        self.admin_password = env.get("PEER_LDAP_ADMIN_PW", "admin")

    @property
    def admin_dn(self) -> str:
        return f"cn=admin,{self.base}"

    def user_dn(self, user: str) -> str:
        return f"uid={user},ou=people,{self.base}"

    @property
    def url(self) -> str:
        return f"ldap://{self.ip}"


class Proxy(Peer):
    """haproxy in TCP mode (env PEER_PROXY): each listen port goes on to a backend, with a
    PROXY protocol header (v1 or v2) first. Start it with `publish` to reach it from here."""

    role = "proxy"

    def listen_ports(self) -> list[int]:
        env = dict(e.split("=", 1) for e in self.container.attrs["Config"]["Env"])
        return [int(spec.split("=")[0]) for spec in env.get("PEER_PROXY", "").split(",") if spec]

    def ready(self) -> bool:
        for port in self.listen_ports():
            try:
                with socket.create_connection((self.ip, port), timeout=0.5):
                    pass
            except OSError:
                return False
        return True

    def host_port(self, port: int) -> int:
        """The port on 127.0.0.1 of this host that is `port` of the proxy (see publish)."""
        self.container.reload()
        return int(self.container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])


P = TypeVar("P", bound=Peer)


def start(
    client: docker.DockerClient,
    kind: type[P],
    net: Network | str | None = None,
    *,
    users: Mapping[str, str] | None = None,
    domains: Sequence[str] = (),
    recipients: Sequence[str] = (),
    records: Iterable[str] | str | None = None,
    ldap_base: str | None = None,
    ldap_admin_password: str | None = None,
    env: Mapping[str, str] | None = None,
    files: Mapping[str, str | bytes] | None = None,
    hostname: str | None = None,
    nameserver: str | None = None,
    publish: Sequence[int] = (),
    wait: bool = True,
    timeout: float = 20.0,
) -> P:
    """Start a peer of kind (Dns, Mta, Pop or Ldap) on net (None: Docker's default bridge).

    users: {name: password} (mta: SASL, pop: logins, ldap: entries); domains/recipients (mta):
    PEER_DOMAINS and PEER_RECIPIENTS; records (dns): the zones file; files: more of /peer
    (e.g. ``tls.crt``/``tls.key``, ``main.cf``, ``dovecot.conf``, ``*.ldif``); nameserver:
    the IP the peer itself resolves with (default: nothing answers). env: any PEER_* var.
    publish: ports reachable from this host on 127.0.0.1 (a random port each).
    """
    ensure_image(client)
    environment = dict(env or {})
    if domains:
        environment["PEER_DOMAINS"] = ",".join(domains)
    if recipients:
        environment["PEER_RECIPIENTS"] = ",".join(recipients)
    if ldap_base:
        environment["PEER_LDAP_BASE"] = ldap_base
    if ldap_admin_password:
        environment["PEER_LDAP_ADMIN_PW"] = ldap_admin_password
    fqdn = hostname or f"{kind.role}.peer.test"
    environment["PEER_HOSTNAME"] = fqdn
    if nameserver:
        environment["PEER_NAMESERVER"] = nameserver
    peer_files: dict[str, str | bytes] = dict(files or {})
    if records is not None:
        peer_files["zones"] = records if isinstance(records, str) else "\n".join(records) + "\n"
    net_name = (net if isinstance(net, str) else net.name) if net is not None else "bridge"
    container = client.containers.create(
        IMAGE,
        [kind.role],
        detach=True,
        dns=["127.0.0.1"],
        labels={LABEL: RUN_ID, "mailctl.peer.role": kind.role},
        hostname=fqdn.split(".")[0],
        network=net_name,
        environment=environment,
        ports={f"{p}/tcp": ("127.0.0.1", None) for p in publish},
    )
    peer = kind(container, net_name)
    try:
        if peer_files:
            peer.put_files(peer_files)
        if users:
            peer.put_files({"users": users_file(users)}, mode=0o600)
        container.start()
        if wait:
            peer.wait_ready(timeout)
    except BaseException:
        peer.remove()
        raise
    return peer


@contextlib.contextmanager
def running(
    client: docker.DockerClient, kind: type[P], net: Network | str | None = None, **kwargs: Any
) -> Iterator[P]:
    """start(...), and remove the container afterwards."""
    peer = start(client, kind, net, **kwargs)
    try:
        yield peer
    finally:
        peer.remove()


def cleanup(client: docker.DockerClient) -> None:
    """Remove every container and network of this test run (peers and appliances)."""
    util.cleanup(client)
