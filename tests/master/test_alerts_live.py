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
from pathlib import Path

import httpx
import pytest
from bramble_testing import Master, Receiver, Sender, wait_for

from bramble.demo import free_port

pytestmark = [pytest.mark.slow]

RULE = '[[alerts]]\nname = "hot"\nmetric = "cputemp"\nthreshold = 70\nfor = "1s"\n'
INTERVAL = 0.2


@pytest.fixture
def node(start_master: Callable[..., Master]) -> Iterator[Sender]:
    master = start_master(nodes=1, interval=INTERVAL, stale_after=3, down_after=8, extra=RULE)
    sender = Sender(master, "node-1", INTERVAL)
    try:
        yield sender
    finally:
        sender.close()


def firing(master: Master, rule: str) -> dict[str, object] | None:
    return next(
        (a for a in master.api("/api/alerts") if a["rule"] == rule and a["state"] == "firing"),
        None,
    )


def test_a_hot_node_fires_then_going_down_fires_node_down(node: Sender) -> None:
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


def test_notifications_go_once_to_each_receiver_and_silences_stop_them(
    start_master: Callable[..., Master], tmp_path: Path
) -> None:
    # About 10 s: it waits out group intervals to show nothing more is sent, and runs the CLI.
    receiver = Receiver()
    alertmanager = Receiver()  # takes every POST: here, Alertmanager's /api/v2/alerts
    closed = free_port()  # nothing listens there: a receiver that fails
    told = tmp_path / "told.jsonl"
    alerting = (
        f'webhooks = ["{receiver.url}", "http://127.0.0.1:{closed}/hook"]\n'
        f'command = ["/bin/sh", "-c", "cat >> {told}; echo >> {told}"]\n'
        'group_wait = "0.2s"\ngroup_interval = "0.5s"\nrepeat_interval = "1h"\n'
        f'alertmanagers = ["{alertmanager.url.removesuffix("/hook")}"]'
    )
    master = start_master(nodes=1, interval=INTERVAL, extra=RULE, tables={"alerting": alerting})
    node = Sender(master, "node-1", INTERVAL)
    try:
        wait_for(lambda: master.api("/api/nodes"), 10, "the node")
        node.temp = 85.0
        wait_for(lambda: receiver.bodies, 10, "the webhook", every=0.05)
        time.sleep(1.2)  # two more group intervals, the same alert firing: nothing more
        (payload,) = receiver.bodies
        assert payload["version"] == "4" and payload["status"] == "firing"
        assert payload["groupLabels"] == {"alertname": "hot"} and payload["receiver"] == "bramble"
        (alert,) = payload["alerts"]
        assert alert["labels"] == {"alertname": "hot", "node": "node-1", "severity": "warning"}
        assert alert["status"] == "firing" and alert["endsAt"] == "0001-01-01T00:00:00Z"
        (by_command,) = [json.loads(line) for line in told.read_text().splitlines() if line]
        assert by_command == payload
        pushed = wait_for(lambda: alertmanager.bodies, 5, "the push to the Alertmanager")
        assert [(a["labels"]["alertname"], a["endsAt"] > a["startsAt"]) for a in pushed[0]] == [
            ("hot", True)
        ]
        health = master.api("/api/health")["parts"]["notifier"]
        assert not health["ok"] and "ConnectError" in health["detail"]

        node.temp = 45.0  # resolved: told once more
        wait_for(lambda: len(receiver.bodies) == 2, 10, "the resolved notification")
        assert receiver.bodies[1]["status"] == "resolved"

        env = {**os.environ, "COLUMNS": "160"}
        silence = subprocess.run(
            [sys.executable, "-m", "bramble", "alerts", "silence", "--rule", "hot",
             "--for", "1h", "--comment", "fan replaced", "--spec", str(master.spec_path)],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert silence.returncode == 0, silence.stderr
        assert "hot on * for 1h" in silence.stdout
        denied = httpx.post(master.base + "/api/silences", json={"duration": 60}, timeout=5)
        assert denied.status_code == 401  # the admin token is needed

        node.temp = 90.0
        alert = wait_for(lambda: firing(master, "hot"), 10, "firing again", every=0.05)
        assert alert["silenced"] is True
        time.sleep(1.2)
        assert len(receiver.bodies) == 2  # silenced: not told
        (silenced,) = master.api("/api/silences")
        assert silenced["comment"] == "fan replaced" and silenced["active"]

        def cli(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "bramble", "alerts", *args, "--spec",
                 str(master.spec_path)],
                env=env, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert "firing (silenced)" in cli("list")
        assert f"silence {silenced['id']} ended" in cli("unsilence", silenced["id"])
        assert firing(master, "hot")["silenced"] is False  # type: ignore[index]
    finally:
        node.close()
        receiver.close()
        alertmanager.close()
