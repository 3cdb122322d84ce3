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
FLUSH = 1.0  # the least the spec allows
BATCH = 1.0  # the live view hands history its rows once a second
KILLS = 20


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


def flushed_since(master: Master, since: float) -> float:
    """The time of the last point of history from SINCE on, once the running master has
    written it (a flush after it was seen); 0 until then."""
    got = master.api(f"/api/nodes/{NODES[-1]}/history", metric="cpuusage", since=since, step=1)
    if not got["points"]:
        return 0.0
    seen = time.time()
    wait_for(
        lambda: (master.api("/api/health")["history_flushed"] or 0) > seen,
        10,
        "a flush after the point was seen",
    )
    return float(got["points"][-1][0])


def test_kill_9_twenty_times_loses_at_most_the_flush_window(
    start_master: Callable[..., Master],
) -> None:
    master = start_master(
        nodes=len(NODES), interval=0.1, tables={"history": f"flush_seconds = {FLUSH}"}
    )
    load = Load(master)
    lives: list[tuple[float, float, float]] = []  # (serving from, a point written, killed at)
    try:
        back = time.time()
        for _ in range(KILLS):
            # as soon as rows of this run have been written: kill -9
            written = wait_for(lambda b=back: flushed_since(master, b), 20, "rows written")
            killed = time.time()
            master.stop(signal.SIGKILL)
            lives.append((back, written, killed))
            master.start()  # the database opens: the API answers only after it has
            back = time.time()
            assert master.api("/api/health")["parts"]["history"]["ok"]
        time.sleep(2 * FLUSH + BATCH + 0.5)
        end = time.time()
        # when history was last written, for the dashboard and whoever asks
        health = master.api("/api/health")
        assert health["history_flush_seconds"] == FLUSH
        assert end - 2 * FLUSH - 1 <= health["history_flushed"] <= time.time()
        assert master.stats()["history_flushed"] is not None
    finally:
        load.stop()
    loss = FLUSH + BATCH + 1  # the flush window, the live view's batch, a second's bucket
    for node in NODES:
        got = master.api(f"/api/nodes/{node}/history", metric="cpuusage", since=lives[0][0], step=1)
        seconds = {int(t) for t, _ in got["points"]}
        for i, (began, written, killed) in enumerate(lives):
            # what was written before the kill is there, and every second of the run but
            # at most the last LOSS before the kill
            assert int(written) in seconds, (node, i, written)
            missing = [s for s in range(int(began) + 1, int(killed)) if s not in seconds]
            assert all(s >= killed - loss for s in missing), (node, i, killed, missing)
        after = [s for s in range(int(back) + 1, int(end)) if s not in seconds]
        assert not after, (node, after)
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
