"""Issue 10: compose.edge.yaml as it stands, an edge MX in front of the mailbox node.

Mail through the edge reaches a mailbox; an unknown recipient is refused at the edge;
with the mailbox node down the edge keeps the mail and loses none; a stopped edge
has drained its queue first.

The project runs with a DNS peer as the only resolver (tests.e2e.edge_nodes): nothing
a daemon looks up leaves this machine.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.e2e import edge_nodes
from tests.e2e.data import ALICE, BOB, base_settings
from tests.e2e.edge_nodes import Nodes
from tests.e2e.util import wait_until

STRANGER = "someone@sender.example"


def edge_settings(**extra: Any) -> dict[str, Any]:
    """The e2e settings (postscreen with the quick greeting) without greylisting."""
    settings = base_settings()
    settings["greylisting"]["enabled"] = False
    return {**settings, **extra}


def delivered_through(nodes: Nodes, subject: str) -> None:
    """A stranger's message to alice, taken by the edge (250) and delivered to her."""
    mid, code, reply = nodes.edge.send(STRANGER, ALICE[0], subject=subject)
    assert code == 250, reply
    nodes.mailbox.wait_delivered(*ALICE, mid)


@pytest.fixture(scope="module")
def nodes(client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    with edge_nodes.running(client, edge_settings(), tmp_path_factory.mktemp("edge")) as nodes:
        yield nodes


def test_mail_through_the_edge_reaches_the_mailbox(nodes: Nodes) -> None:
    delivered_through(nodes, "through the edge")
    logs = nodes.edge.logs()
    assert "postfix/mailbox/smtp" in logs and "status=sent" in logs
    # TLS on the way in: the mailbox node's edge port logged the edge's STARTTLS
    assert "postfix/edge/smtpd" in nodes.mailbox.logs()


def test_an_unknown_recipient_is_refused_at_the_edge(nodes: Nodes) -> None:
    # the edge asked the mailbox node (address verification), which does not know it
    code, reply = nodes.edge.rcpt(STRANGER, "nobody@example.com")
    assert code == 550 and "Recipient address rejected" in reply, reply
    code, reply = nodes.edge.rcpt(STRANGER, "victim@elsewhere.example")
    assert code == 554 and "Relay access denied" in reply, reply  # never a relay


def test_a_user_added_on_the_mailbox_node_is_known_at_the_edge(nodes: Nodes) -> None:
    code, out = nodes.mailbox.cli("user", "add", "erin@example.com", stdin="erin-pw-1\n")
    assert code == 0, out
    wait_until(
        lambda: nodes.edge.rcpt(STRANGER, "erin@example.com")[0] == 250,
        30,
        lambda: f"erin accepted at the edge: {nodes.edge.rcpt(STRANGER, 'erin@example.com')}",
    )


def test_the_edge_keeps_mail_while_the_mailbox_node_is_down(nodes: Nodes) -> None:
    nodes.proj.compose("stop", "mailbox")
    mids = []
    for i in range(5):
        mid, code, reply = nodes.edge.send(STRANGER, ALICE[0], subject=f"while down {i}")
        assert code == 250, reply
        mids.append(mid)
    # a recipient the edge never asked about: "try later", never a final 550
    code, reply = nodes.edge.rcpt(STRANGER, "newcomer@example.com")
    assert code == 450, reply
    wait_until(
        lambda: nodes.queued_at_edge() == 5,
        30,
        lambda: f"the edge holds the mail:\n{nodes.edge.logs()[-3000:]}",
    )
    time.sleep(5)  # down for a while; the edge retries and defers
    nodes.proj.compose("start", "mailbox")
    nodes.mailbox.wait_ready()
    nodes.edge.exec("postqueue", "-f")  # what the edge's own retry would do later
    for mid in mids:
        nodes.mailbox.wait_delivered(*ALICE, mid, timeout=60)
    assert nodes.queued_at_edge() == 0


def test_a_stopped_edge_has_drained_its_queue(nodes: Nodes) -> None:
    nodes.proj.compose("stop", "mailbox")
    mids = []
    for i in range(3):
        mid, code, reply = nodes.edge.send(STRANGER, ALICE[0], subject=f"to drain {i}")
        assert code == 250, reply
        mids.append(mid)
    nodes.proj.compose("start", "mailbox")
    nodes.mailbox.wait_ready()
    assert nodes.queued_at_edge() == 3  # deferred: Postfix would retry only minutes later
    t0 = time.monotonic()
    nodes.proj.compose("stop", "edge")
    took = time.monotonic() - t0
    logs = nodes.edge.logs()
    tail = logs[logs.rfind("mailctl: stopping") :]
    assert "drained: the queue is empty" in logs, tail[:6000]
    for mid in mids:
        nodes.mailbox.wait_delivered(*ALICE, mid)
    print(f"edge drain of 3 messages and stop: {took:.1f}s")


@pytest.fixture(scope="module")
def login_nodes(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nodes]:
    """Edge and mailbox node where the edge logs in (as bob) at the edge port."""
    settings = edge_settings(edge={"username": BOB[0], "password_file": "/config/bob.pw"})
    with edge_nodes.running(client, settings, tmp_path_factory.mktemp("edge-login")) as nodes:
        yield nodes


def test_an_edge_with_a_login_uses_it_at_the_mailbox_node(login_nodes: Nodes) -> None:
    delivered_through(login_nodes, "logged in")
    logs = login_nodes.mailbox.logs()
    assert re.search(r"postfix/edge/smtpd\[\d+\]: \S+: client=\S+, sasl_method=\w+, "
                     rf"sasl_username={re.escape(BOB[0])}", logs), logs[-3000:]  # fmt: skip
    assert BOB[1] not in logs and BOB[1] not in login_nodes.edge.logs()
