"""Signed datagrams with values no board can measure: huge, non-finite, or strings that are
not text. A good signature does not make a value sane; each is refused and counted, and the
master keeps serving, ticking and writing history."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from bramble_testing import Master, Sender, sample_body, wait_for

pytestmark = [pytest.mark.slow]


def strict_json(text: str) -> Any:
    """JSON as a browser parses it: no NaN, no Infinity."""

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@contextmanager
def event_stream(master: Master) -> Iterator[list[str]]:
    """Collect the `data:` lines of /api/events while the block runs."""
    lines: list[str] = []
    stop = threading.Event()

    def read() -> None:
        with httpx.stream("GET", master.base + "/api/events", timeout=30) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    lines.append(line[5:])
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: lines, 10, "the event stream's snapshot")
    try:
        yield lines
    finally:
        time.sleep(1.5)  # a stats event every second ends the read loop
        stop.set()
        reader.join(5)


def history_points(master: Master, node: str) -> int:
    return len(
        master.api(f"/api/nodes/{node}/history", metric="cpuusage", since=-300, step=1)["points"]
    )


HUGE = "1" + "0" * 400


@pytest.mark.parametrize(
    "field",
    [
        pytest.param(lambda b: b["meminfo"].update(MemTotal=0), id="meminfo.MemTotal"),
        pytest.param(lambda b: b["disk"].update(used=0), id="disk.used"),
    ],
)
def test_a_huge_value_is_refused_and_the_ticker_keeps_running(
    start_master: Callable[..., Master], field: Callable[[dict[str, Any]], None]
) -> None:
    master = start_master(interval=0.2, stale_after=3, down_after=8)
    steady = Sender(master, "node-1", 0.2)
    leaving = Sender(master, "node-2", 0.2)
    try:
        wait_for(lambda: history_points(master, "node-1") >= 2, 10, "node-1 in history")
        body = sample_body("node-3", 1, interval=0.2)
        field(body)
        # the same object with a 401-digit integer where the zero was
        text = json.dumps(body, separators=(",", ":"))
        text = text.replace('"MemTotal":0', f'"MemTotal":{HUGE}').replace(
            '"used":0', f'"used":{HUGE}'
        )
        assert HUGE in text
        master.send(master.signed(text))
        time.sleep(1.5)  # a few ticks
        assert httpx.get(master.base + "/metrics", timeout=5).status_code == 200
        assert master.rejected("bad_value") == 1
        assert all(n["name"] != "node-3" for n in master.api("/api/nodes"))

        # the ticker still runs: a node that stops goes stale, and history keeps growing
        leaving.close()
        wait_for(
            lambda: any(
                c["node"] == "node-2" and c["kind"] == "stale" for c in master.api("/api/changes")
            ),
            10,
            "node-2's stale event",
        )
        before = history_points(master, "node-1")
        wait_for(lambda: history_points(master, "node-1") > before + 1, 10, "more history rows")
    finally:
        steady.close()
        leaving.close()


def test_a_counter_jump_is_refused_and_every_answer_stays_json(
    start_master: Callable[..., Master],
) -> None:
    master = start_master(interval=0.2)
    with event_stream(master) as lines:
        now = time.time()
        master.send(sample_body("node-1", 1, ts=now - 0.4, net={"eth0": [0, 0]}))
        master.send(sample_body("node-1", 2, ts=now - 0.2, net={"eth0": [10**308, 0]}))
        time.sleep(0.5)  # the stream coalesces: give it a chance to show this one
        master.send(sample_body("node-1", 3, ts=now, net={"eth0": [2**64, 2**64]}))
        wait_for(lambda: any("node-1" in line for line in lines), 5, "node-1 in the stream")
        time.sleep(0.5)
    for line in lines:
        strict_json(line)
    response = httpx.get(master.base + "/api/nodes", timeout=5)
    assert response.status_code == 200
    (node,) = strict_json(response.text)
    assert node["sample"]["net"] == {"eth0": [0, 0]}
    metrics = httpx.get(master.base + "/metrics", timeout=5)
    assert metrics.status_code == 200 and "Inf" not in metrics.text and "NaN" not in metrics.text
    assert master.rejected("bad_value") == 2


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"net": {"\ud800": [1, 2]}}, id="net-surrogate"),
        pytest.param({"net": {"eth\n0": [1, 2]}}, id="net-newline"),
        pytest.param({"net": {"e" * 16: [1, 2]}}, id="net-too-long"),
        pytest.param({"disk": {"us\udfffed": 1}}, id="disk-surrogate"),
        pytest.param(
            {"meminfo": {"MemTotal": 1000, "Mem\ud800": 5, "MemAvailable": 1}},
            id="meminfo-surrogate",
        ),
        pytest.param({"meminfo": {"MemTotal": 1000, "M" * 64: 1}}, id="meminfo-too-long"),
    ],
)
def test_a_string_that_is_not_text_is_refused(
    start_master: Callable[..., Master], fields: dict[str, Any]
) -> None:
    master = start_master(interval=0.2)
    master.send(sample_body("node-1", 1))
    master.send(sample_body("node-2", 1, **fields))  # json.dumps escapes \ud800 as such
    time.sleep(1)
    response = httpx.get(master.base + "/api/nodes", timeout=5)
    assert response.status_code == 200
    assert [n["name"] for n in strict_json(response.text)] == ["node-1"]
    assert httpx.get(master.base + "/metrics", timeout=5).status_code == 200
    assert master.rejected("bad_text") == 1
