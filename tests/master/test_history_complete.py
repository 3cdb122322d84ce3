"""Every accepted sample lands in the raw tier of history: counted through the API, points
against datagrams (so it holds for any history engine), and as rows on disk after a clean
stop, two a second too."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import pytest
from bramble_testing import Master, sample_body, wait_for

from bramble.master.history import decode_rows

pytestmark = [pytest.mark.slow]


def test_every_accepted_sample_becomes_a_history_point(
    start_master: Callable[..., Master],
) -> None:
    master = start_master(nodes=10, interval=1.0)
    nodes, samples = [f"node-{i}" for i in range(1, 11)], 25
    start = int(time.time()) - samples + 0.5  # one a second, the last half a second ago
    # as a node sends them at 1 Hz, but all at once: arrival timing must not matter
    for seq in range(1, samples + 1):
        for node in nodes:
            master.send(sample_body(node, seq, ts=start + seq - 1, cpuusage=seq / 100))
    wait_for(lambda: master.stats()["accepted"] == samples * len(nodes), 10, "all accepted")
    assert master.stats()["rejected"] == {}

    def points(node: str) -> list[list[float]]:
        history = master.api(f"/api/nodes/{node}/history", metric="cpuusage", since=-120, step=1)
        return list(history["points"])

    wait_for(lambda: all(len(points(n)) >= samples for n in nodes), 10, "every sample in history")
    for node in nodes:
        got = points(node)
        assert [round(v * 100) for _, v in got] == list(range(1, samples + 1)), node


def test_every_accepted_datagram_is_a_stored_row_two_a_second_too(
    start_master: Callable[..., Master],
) -> None:
    master = start_master(nodes=10, interval=0.5)
    nodes, samples = [f"node-{i}" for i in range(1, 11)], 20
    start = time.time() - samples * 0.5
    for seq in range(1, samples + 1):
        for node in nodes:
            master.send(sample_body(node, seq, ts=start + (seq - 1) * 0.5, interval=0.5))
    wait_for(lambda: master.stats()["accepted"] == samples * len(nodes), 10, "all accepted")
    time.sleep(1.5)  # the live view hands its batch to history once a second
    master.stop()  # a clean stop writes what history holds in memory
    with sqlite3.connect(master.spec.history.path) as db:
        blocks = db.execute("SELECT data FROM blocks WHERE tier = 0").fetchall()
    assert sum(len(decode_rows(data)) for (data,) in blocks) == samples * len(nodes)
