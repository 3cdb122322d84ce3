"""kill -9 a master under load, again and again: its history database opens every time, and
history is whole but for what came in at most `flush_seconds` (and the live view's one-second
batch) before each kill, and while the master was down."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from collections.abc import Callable

import pytest
from bramble_testing import Master, sample_body, wait_for

pytestmark = [pytest.mark.slow]
NODES = [f"node-{i}" for i in range(1, 6)]
FLUSH = 1.0
BATCH = 1.0  # the live view hands history its rows once a second


class Load:
    """Every node sending every 0.1 s, its datagrams stamped with the time they are sent."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        seq = 0
        while not self.stopped.is_set():
            seq += 1
            for node in NODES:
                with contextlib.suppress(OSError):  # the master is down for a moment
                    self.master.send(sample_body(node, seq, interval=0.1, cpuusage=0.5))
            self.stopped.wait(0.1)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


def test_kill_9_loses_at_most_the_flush_window(start_master: Callable[..., Master]) -> None:
    master = start_master(
        nodes=len(NODES), interval=0.1, tables={"history": f"flush_seconds = {FLUSH}"}
    )
    load = Load(master)
    outages: list[tuple[float, float]] = []  # (killed at, serving again at)
    try:
        begin = time.time()
        for _ in range(3):
            time.sleep(4)  # more than what a kill may lose: the seconds between are checked
            killed = time.time()
            master.stop(signal.SIGKILL)
            master.start()  # the database opens: the API answers only after it has
            outages.append((killed, time.time()))
            assert master.api("/api/health")["parts"]["history"]["ok"]
        time.sleep(3)
        end = time.time()
        # when history was last written, for the dashboard and whoever asks
        health = master.api("/api/health")
        assert health["history_flush_seconds"] == FLUSH
        assert end - 2 * FLUSH - 1 <= health["history_flushed"] <= time.time()
        assert master.stats()["history_flushed"] is not None
    finally:
        load.stop()
    for node in NODES:
        got = master.api(f"/api/nodes/{node}/history", metric="cpuusage", since=begin, step=1)
        seconds = {int(t) for t, _ in got["points"]}
        missing = [s for s in range(int(begin) + 1, int(end)) if s not in seconds]
        for second in missing:
            assert any(
                killed - FLUSH - BATCH - 1 <= second <= back + 1 for killed, back in outages
            ), (node, second, outages)
        # the master is down for a while each time, so something is missing, but not much
        assert len(missing) <= sum(back - killed + FLUSH + BATCH + 2 for killed, back in outages)
    master.stop()
    with sqlite3.connect(master.spec.history.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_points_match_datagrams_across_a_clean_restart(
    start_master: Callable[..., Master],
) -> None:
    master = start_master(nodes=2, interval=1.0)  # the default flush: only the stop writes
    start = int(time.time()) - 20 + 0.5
    for seq in range(1, 11):
        for node in ("node-1", "node-2"):
            master.send(sample_body(node, seq, ts=start + seq - 1, cpuusage=seq / 100))
    wait_for(lambda: master.stats()["accepted"] == 20, 10, "all accepted")
    time.sleep(1.5)  # the live view's batch reaches the writer
    master.stop()
    master.start()
    for node in ("node-1", "node-2"):
        got = master.api(f"/api/nodes/{node}/history", metric="cpuusage", since=-120, step=1)
        assert [round(v * 100) for _, v in got["points"]] == list(range(1, 11)), node
