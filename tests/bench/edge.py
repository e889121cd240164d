"""Edge MX numbers for `make bench` (issue 10): mail/s through one edge and through two
edges into one mailbox node (compose.edge.yaml), against the single appliance in the
same run; and how long an edge holding 1,000 queued messages takes to drain on stop.

Load: smtp-source inside each edge over loopback (a trusted client there), 2 KB
messages to one mailbox, as in bench.delivery_run. Everything runs on this machine's
cores at once: edges, mailbox node and load.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker

from tests.bench.bench import bench_settings, delivery_run, row, smtp_source
from tests.e2e import edge_nodes
from tests.e2e.appliance import Appliance
from tests.e2e.edge_nodes import Nodes
from tests.e2e.util import wait_until


def settings(drain: int = 20) -> dict[str, Any]:
    s: dict[str, Any] = bench_settings()
    s["greylisting"]["enabled"] = False
    s["dkim"] = {"enabled": False}
    s["edge"] = {"drain_timeout": drain}
    return s


def source(app: Appliance, messages: int, sessions: int = 10) -> None:
    smtp_source(app.container, messages, sessions)


def through_edges(nodes: Nodes, messages: int = 2000) -> tuple[float, float]:
    """(accepted, delivered) mail/s with the load split over the edges."""
    share = messages // len(nodes.edges)
    t0 = time.monotonic()
    threads = [threading.Thread(target=source, args=(e, share)) for e in nodes.edges]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = time.monotonic() - t0

    def empty() -> bool:
        return all(Nodes.queued(a) == 0 for a in (*nodes.edges, nodes.mailbox))

    wait_until(empty, 900, "the queues never drained", interval=0.2)
    delivered = time.monotonic() - t0
    return share * len(nodes.edges) / accepted, share * len(nodes.edges) / delivered


def edge_throughput(client: docker.DockerClient, rounds: int = 2) -> None:
    got: dict[str, list[tuple[float, float]]] = {"single": [], "1 edge": [], "2 edges": []}
    for _ in range(rounds):
        a, d, _ = delivery_run(client, "on")
        got["single"].append((a, d))
        for two in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                with edge_nodes.running(client, settings(), Path(tmp), two_edges=two) as nodes:
                    got["2 edges" if two else "1 edge"].append(through_edges(nodes))
        print("  " + "  ".join(f"{k}: {v[-1][0]:.1f}/{v[-1][1]:.1f}" for k, v in got.items())
              + " (accepted/delivered mail/s)", flush=True)  # fmt: skip
    med = {k: statistics.median(d for _, d in v) for k, v in got.items()}
    row("delivered via 1 edge", med["1 edge"], "/s", med["single"], "one appliance", "report")
    row("delivered via 2 edges", med["2 edges"], "/s", med["1 edge"], "1 edge", "report")


def drain_time(client: docker.DockerClient, queued: int = 1000) -> None:
    """An edge holding `queued` messages (deferred while the mailbox node was down) is
    stopped once the node is back: seconds until its queue is empty, and until it exited."""
    with tempfile.TemporaryDirectory() as tmp:
        with edge_nodes.running(client, settings(drain=40), Path(tmp)) as nodes:
            nodes.proj.compose("stop", "mailbox")
            source(nodes.edge, queued)
            wait_until(lambda: nodes.queued_at_edge() == queued, 300, "all queued", interval=0.5)
            nodes.proj.compose("start", "mailbox")
            nodes.mailbox.wait_ready()
            t0 = time.monotonic()
            nodes.proj.compose("stop", "-t", "60", "edge")
            stopped = time.monotonic() - t0
            m = re.search(r"drained: the queue is empty after ([0-9.]+)s", nodes.edge.logs())
            if not m:
                raise RuntimeError(f"the edge did not drain:\n{nodes.edge.logs()[-2000:]}")
    row(f"edge drain, {queued} queued", float(m.group(1)), "s", stopped, "stop -> exited",
        "report")  # fmt: skip
