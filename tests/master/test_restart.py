"""A master that starts again knows the nodes it knew: no fresh `new` events for them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from bramble_testing import Processes, api, wait_for, write_spec

from bramble.master.nodes import NodeTable
from bramble.spec import load_spec
from bramble.telemetry.wire import Packet, Sample

pytestmark = pytest.mark.slow


def test_after_a_master_restart_known_nodes_are_not_new(
    tmp_path: Path, processes: Processes
) -> None:
    spec_path = write_spec(tmp_path / "c", nodes=2, interval=0.2)
    base = f"http://127.0.0.1:{load_spec(spec_path).dashboard.port}/"
    processes.start("master", "master", "--spec", str(spec_path))
    for name in ("node-1", "node-2"):
        processes.start(name, "agent", "--spec", str(spec_path), "--node-name", name)

    def kinds(since: float = 0) -> list[tuple[str, str]]:
        return sorted((c["node"], c["kind"]) for c in api(base, "api/changes") if c["ts"] >= since)

    wait_for(lambda: kinds() == [("node-1", "new"), ("node-2", "new")], 30, "two new nodes")
    assert processes.stop("master") == 0
    restarted = time.time()
    processes.start("master", "master", "--spec", str(spec_path))
    wait_for(lambda: len(api(base, "api/nodes")) == 2, 30, "both nodes on the new master")
    time.sleep(1)  # the changes of their first datagrams are written within a second
    assert kinds(restarted) == []
    assert [n["status"] for n in api(base, "api/nodes")] == ["up", "up"]


def _packet(node: str) -> Packet:
    sample = Sample(cpufreq=0, cputemp=0.0, cpuusage=0.1, loadavg=(0.0, 0.0, 0.0), meminfo={})
    return Packet(node, 1, 1, 100.0, 1.0, sample, True, "k1")


def test_a_known_node_last_seen_down_is_up_again_and_an_unknown_one_is_new() -> None:
    table = NodeTable()
    table.known = {"node-1": "down", "node-2": "up"}
    assert [c.kind for c in table.accept(_packet("node-1"), 100.0)] == ["up"]
    assert [c.kind for c in table.accept(_packet("node-2"), 100.0)] == []
    assert [c.kind for c in table.accept(_packet("node-3"), 100.0)] == ["new"]
