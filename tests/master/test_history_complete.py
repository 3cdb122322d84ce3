"""Every accepted sample lands in the raw tier of history (at most one per node per second):
counted through the API, points against datagrams, so it holds for any history engine."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from bramble_testing import Master, sample_body, wait_for

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
