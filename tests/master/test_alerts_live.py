"""Alerts in a real master, fed real datagrams over UDP: a hot node fires its rule within an
interval after `for`, everywhere alerts show (/api/alerts, the event stream, /metrics, `bramble
status`); a node that stops sending fires `node_down` and resolves its metric alerts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from bramble_testing import Master, sample_body, wait_for

pytestmark = [pytest.mark.slow]

RULE = '[[alerts]]\nname = "hot"\nmetric = "cputemp"\nthreshold = 70\nfor = "1s"\n'
INTERVAL = 0.2


class Node:
    """A node sending a signed datagram every INTERVAL from a thread; `temp` is its reading."""

    def __init__(self, master: Master, name: str) -> None:
        self.master, self.name = master, name
        self.temp = 45.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seq = 0
        while not self.stop.wait(INTERVAL):
            seq += 1
            body = sample_body(self.name, seq, interval=INTERVAL, cputemp=self.temp)
            self.master.send(body)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def node(start_master: Callable[..., Master]) -> Iterator[Node]:
    master = start_master(nodes=1, interval=INTERVAL, stale_after=3, down_after=8, extra=RULE)
    sender = Node(master, "node-1")
    try:
        yield sender
    finally:
        sender.close()


def firing(master: Master, rule: str) -> dict[str, object] | None:
    return next(
        (a for a in master.api("/api/alerts") if a["rule"] == rule and a["state"] == "firing"),
        None,
    )


def test_a_hot_node_fires_then_going_down_fires_node_down(node: Node) -> None:
    master = node.master
    wait_for(lambda: master.api("/api/nodes"), 10, "the node")
    assert master.api("/api/alerts") == []
    events: list[str] = []

    def watch() -> None:
        with httpx.stream("GET", master.base + "/api/events", timeout=10) as stream:
            for line in stream.iter_lines():
                if line.startswith("event: alert"):
                    events.append(line)
                elif events and line.startswith("data:"):
                    events.append(line)
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.3)  # the viewer is connected
    hot_since = time.time()
    node.temp = 85.0
    alert = wait_for(lambda: firing(master, "hot"), 10, "the alert firing", every=0.05)
    # it fires within an interval after `for` (and the 0.5 s tick), measured from the sender
    assert 1.0 <= alert["fired_at"] - alert["active_at"] <= 1.0 + 0.5 + INTERVAL
    assert alert["fired_at"] - hot_since <= 1.0 + 0.5 + 3 * INTERVAL
    assert (alert["node"], alert["severity"], alert["value"]) == ("node-1", "warning", 85.0)
    assert alert["condition"] == "cputemp > 70"

    watcher.join(10)
    assert events[0] == "event: alert"
    told = json.loads(events[1][5:])
    assert (told["rule"], told["state"]) == ("hot", "firing")

    metrics = httpx.get(master.base + "/metrics", timeout=5).text
    assert (
        'ALERTS{alertname="hot",alertstate="firing",node="node-1",severity="warning"} 1.0'
        in metrics
    )

    env = {**os.environ, "COLUMNS": "160"}
    status = subprocess.run(
        [sys.executable, "-m", "bramble", "status", "--spec", str(master.spec_path)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert (
        "1 alert firing" in status.stdout and "warning hot on node-1: cputemp > 70" in status.stdout
    )

    node.close()  # the node stops sending: down after 8 intervals
    down = wait_for(lambda: firing(master, "node_down"), 10, "node_down firing")
    assert down["severity"] == "critical"
    states = {(a["rule"], a["state"]) for a in master.api("/api/alerts")}
    assert states == {("node_down", "firing"), ("hot", "resolved")}
