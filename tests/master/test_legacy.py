"""Legacy telemetry: the original C daemon's real datagrams (allow_unsigned = true). They are
accepted, named once, shown as unsigned everywhere, and never change a node that signs."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from bramble_testing import Master, sample_body, wait_for

pytestmark = [pytest.mark.slow]

ORIGINAL = Path(__file__).resolve().parents[1] / "telemetry" / "fixtures" / "original"
CAPTURES = sorted(ORIGINAL.glob("*.json"))
UNSIGNED = {"telemetry": 'allow_unsigned = true\nadmit = "any"'}


def legacy_master(start_master: Callable[..., Master]) -> Master:
    return start_master(interval=0.2, stale_after=3, down_after=8, tables=UNSIGNED)


def test_the_original_daemons_datagrams_are_accepted(start_master: Callable[..., Master]) -> None:
    assert len(CAPTURES) == 4
    master = legacy_master(start_master)
    sources = []
    for i, capture in enumerate(CAPTURES):
        data = capture.read_bytes()
        source = f"127.0.0.{11 + i}"  # no reverse name: each is named by its address
        master.send(data, source=source)
        master.send(data + b"\0" * 40, source=source)  # NUL padding, as some versions sent
        sources.append(source)
    wait_for(lambda: master.stats()["accepted"] + sum(master.rejected(r) for r in ("bad_shape",
             "not_json")) >= 4, 5, "the datagrams counted")  # fmt: skip
    time.sleep(0.5)
    assert master.stats()["rejected"] == {}
    nodes = {n["name"]: n for n in master.api("/api/nodes")}
    assert sorted(nodes) == sources
    for node in nodes.values():
        assert node["signed"] is False
        assert node["sample"]["cpufreq"] == 700
        meminfo = node["sample"]["meminfo"]
        assert meminfo["MemTotal"] == 448776 and meminfo["SwapCached"] == 0
        assert meminfo.get("VmallocTotal", 0) >= 0  # -256 reads as absent


def test_an_unsigned_datagram_never_changes_a_signed_node(
    start_master: Callable[..., Master],
) -> None:
    master = legacy_master(start_master)
    # 127.0.0.1 is called "localhost"; 127.0.0.2 has no reverse name and is called by address
    for seq, name in enumerate(("localhost", "127.0.0.2"), start=1):
        master.send(sample_body(name, seq, interval=5.0))
    wait_for(lambda: len(master.api("/api/nodes")) == 2, 5, "the two signed nodes")
    original = CAPTURES[0].read_bytes()
    for _ in range(5):
        master.send(original, source="127.0.0.1")
        master.send(original, source="127.0.0.2")
        time.sleep(0.3)
    nodes = {n["name"]: n for n in master.api("/api/nodes")}
    assert sorted(nodes) == ["127.0.0.2", "localhost"]
    for node in nodes.values():
        assert node["signed"] is True and node["sample"]["cpufreq"] == 1500
    assert master.rejected("name_taken") == 10


def test_a_legacy_node_is_named_once_and_shown_unsigned(
    start_master: Callable[..., Master],
) -> None:
    master = legacy_master(start_master)
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(httpx.HTTPError, ValueError):
                seen.update(n["name"] for n in master.api("/api/nodes"))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for _ in range(20):
            master.send(CAPTURES[0].read_bytes(), source="127.0.0.1")
            time.sleep(0.05)
        wait_for(lambda: "localhost" in seen, 5, "the node called localhost")
        time.sleep(0.5)
    finally:
        done.set()
        watcher.join(5)
    assert seen == {"localhost"}
    (node,) = master.api("/api/nodes")
    assert node["interval"] == 2.0  # the original daemon sends every 2 s
    metrics = httpx.get(master.base + "/metrics", timeout=5).text
    assert 'bramble_node_signed{node="localhost"} 0.0' in metrics
    status = subprocess.run(
        [sys.executable, "-m", "bramble", "status", "--spec", str(master.spec_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    assert "localhost*" in status.stdout
    assert "unsigned (legacy, anyone could send them): localhost" in status.stdout
