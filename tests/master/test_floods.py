"""Floods from a holder of the telemetry key: invented node names, nodes claiming to live for
hours, and datagrams captured before a restart. None of them may grow the master without
bound or be accepted twice."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from bramble_testing import Master, read_status, sample_body, wait_for

pytestmark = [pytest.mark.slow]


def db_bytes(master: Master) -> int:
    path = Path(master.spec.history.path)
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def test_names_outside_the_spec_are_refused(start_master: Callable[..., Master]) -> None:
    master = start_master(interval=0.2)
    master.send(sample_body("node-1", 1, interval=0.2))
    wait_for(lambda: master.api("/api/nodes"), 5, "node-1")
    time.sleep(1.5)  # the first history batch is written
    rss, size = read_status(master.pid, "VmRSS"), db_bytes(master)
    flood = 20_000
    for i in range(flood):
        master.send(sample_body(f"fake-{i}", 1, interval=0.2))
        if i % 500 == 499:
            time.sleep(0.02)  # stay within the socket's receive buffer

    def counted() -> int:
        stats = master.stats()
        return int(stats["accepted"] + sum(stats["rejected"].values()))

    wait_for(lambda: counted() >= flood, 30, "every datagram counted")
    time.sleep(2)  # history batches and change rows, if any, are written
    assert [n["name"] for n in master.api("/api/nodes")] == ["node-1"]
    assert master.rejected("unknown_node") == flood
    assert all(c["node"] == "node-1" for c in master.api("/api/changes", limit=1000))
    assert read_status(master.pid, "VmRSS") - rss < 8 * 1024
    assert db_bytes(master) - size < 256 * 1024


def test_a_node_cannot_claim_to_live_for_hours(start_master: Callable[..., Master]) -> None:
    master = start_master(interval=0.2, stale_after=3, down_after=8)
    master.send(sample_body("node-1", 1, interval=3600))
    wait_for(lambda: master.api("/api/nodes"), 5, "node-1")
    wait_for(
        lambda: master.api("/api/nodes/node-1")["status"] == "down",
        40,
        "node-1 down, well within an hour",
    )


def capture(master: Master, node: str, seqs: range) -> list[bytes]:
    now = time.time()
    return [
        master.signed(sample_body(node, seq, ts=now - 0.2 * (seqs.stop - seq), interval=0.2))
        for seq in seqs
    ]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_replay_window_survives_a_restart(
    start_master: Callable[..., Master], stop: int
) -> None:
    master = start_master(interval=0.2)
    datagrams = capture(master, "node-1", range(1, 6))
    for data in datagrams:
        master.send(data)
    wait_for(lambda: master.api("/api/nodes/node-1")["seq"] == 5, 5, "node-1 at seq 5")
    time.sleep(2)  # what a master persists on its own, it has persisted by now
    master.stop(stop)
    master.start()
    for data in datagrams:  # captured 3 s ago, well within the clock window
        master.send(data)
    time.sleep(1)
    assert master.rejected("replay") == len(datagrams)
    assert master.api("/api/nodes") == [] or master.api("/api/nodes/node-1")["seq"] == 5
    master.send(sample_body("node-1", 6, interval=0.2))
    wait_for(lambda: master.api("/api/nodes/node-1")["seq"] == 6, 5, "node-1's next datagram")
