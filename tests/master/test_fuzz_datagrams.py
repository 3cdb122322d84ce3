"""Fuzz: mutated datagrams, signed and unsigned, at a real master. Every one is counted,
none stops it, and what it serves stays valid JSON (bench/fuzz.py runs many more)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest
from bramble_testing import Master, sample_body, wait_for
from fuzzing import datagrams

pytestmark = [pytest.mark.slow]
COUNT = 3000


def strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


def test_mutated_datagrams_are_all_counted_and_nothing_breaks(
    start_master: Callable[..., Master],
) -> None:
    master = start_master(interval=0.2, tables={"telemetry": "allow_unsigned = true"})
    sent = 0
    for i, (_how, data) in enumerate(
        datagrams(sample_body("node-1", 1, interval=0.2), COUNT, seed=14)
    ):
        body = data.replace(b'"seq":1,', f'"seq":{i + 2},'.encode())
        # signed as they are (the signature is good, the content is not), or unsigned
        master.send(master.signed(body) if i % 2 else body)
        sent += 1
        if i % 200 == 199:
            time.sleep(0.05)

    def counted() -> int:
        stats = master.stats()
        return int(stats["accepted"] + sum(stats["rejected"].values()))

    wait_for(lambda: counted() >= sent, 30, "every datagram counted")
    stats = master.stats()
    assert counted() == sent
    assert "internal" not in stats["rejected"], stats
    assert master.proc.poll() is None
    for path in ("/api/nodes", "/api/stats", "/api/changes"):
        response = httpx.get(master.base + path, timeout=5)
        assert response.status_code == 200, path
        strict(response.text)
    metrics = httpx.get(master.base + "/metrics", timeout=5)
    assert metrics.status_code == 200 and "NaN" not in metrics.text and "Inf" not in metrics.text
    assert "Traceback" not in master.processes.log(master.name)
