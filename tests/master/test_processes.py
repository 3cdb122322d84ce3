"""A node's top processes on the master: the node table keeps the latest (pure), and a real
master serves what real agents send, refusing and counting hostile process datagrams."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from bramble_testing import Master, Processes, sample_body, wait_for

from bramble.master.nodes import NodeTable
from bramble.telemetry import native
from bramble.telemetry.wire import Packet, Proc, ProcsPacket, Rejected, Sample

SAMPLE = Sample(1000, 40.0, 0.5, (1.0, 1.0, 1.0), {"MemTotal": 100},
                fs={"/": (1000, 250, 700), "/boot/firmware": (512, 0, 512)})  # fmt: skip
T0 = 1_800_000_000.0
PROCS = (Proc("ffmpeg", 2540, 282.2, 250_000_000), Proc("python3", 2231, 88.5, 200_000_000))


def sample(seq: int, boot: int = 100) -> Packet:
    return Packet("n1", boot, seq, T0 + seq, 1.0, SAMPLE, True, "k1")


def procs(seq: int, boot: int = 100, rows: tuple[Proc, ...] = PROCS) -> ProcsPacket:
    return ProcsPacket("n1", boot, seq, T0 + seq, rows, "k1")


def reason(table: NodeTable, packet: ProcsPacket) -> str:
    with pytest.raises(Rejected) as refused:
        table.accept_procs(packet)
    return refused.value.reason


def test_the_table_keeps_the_latest_processes_of_each_node() -> None:
    table = NodeTable()
    assert table.processes("n1") is None
    assert reason(table, procs(1)) == "unknown_node"  # before any sample
    table.accept(sample(1), T0)
    assert table.processes("n1") == {"ts": None, "processes": []}
    table.accept_procs(procs(2))
    assert table.processes("n1") == {
        "ts": T0 + 2,
        "processes": [
            {"name": "ffmpeg", "pid": 2540, "cpu": 282.2, "rss": 250_000_000},
            {"name": "python3", "pid": 2231, "cpu": 88.5, "rss": 200_000_000},
        ],
    }
    # one seq for both kinds: neither may be replayed after the other
    assert reason(table, procs(2)) == "replay"
    with pytest.raises(Rejected):
        table.accept(sample(2), T0 + 2)
    table.accept(sample(3), T0 + 3)
    assert reason(table, procs(3)) == "replay"
    assert reason(table, procs(9, boot=99)) == "replay"  # of another boot
    table.accept_procs(procs(4, rows=PROCS[:1]))
    assert [p["pid"] for p in table.processes("n1")["processes"]] == [2540]  # type: ignore[index]
    # a reboot: the processes of the last boot are gone
    table.accept(sample(1, boot=200), T0 + 10)
    assert table.processes("n1") == {"ts": None, "processes": []}


def test_an_unsigned_node_takes_no_processes() -> None:
    table = NodeTable()
    table.accept(Packet("n1", 0, 0, T0, 2.0, SAMPLE, False, None), T0)
    assert reason(table, procs(1, boot=0)) == "unknown_node"


# --- a real master, real agents --------------------------------------------------------------


def agent(processes: Processes, master: Master, name: str, engine: str, every: int) -> None:
    processes.start(name, "agent", "--spec", str(master.spec_path), "--node-name", name,
                    "--engine", engine, "--procs-every", str(every))  # fmt: skip


def get(master: Master, path: str) -> httpx.Response:
    return httpx.get(master.base + path, timeout=5)


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().rstrip("\n")
    except OSError:
        return None


ENGINES = ["python"] + (["compiled"] if native.compiler() is not None else [])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_a_master_serves_the_processes_a_real_agent_sends(
    start_master: Any, processes: Processes, engine: str
) -> None:
    master: Master = start_master(interval=0.2)
    agent(processes, master, "node-1", engine, every=2)
    agent(processes, master, "node-2", engine, every=0)  # off

    def served() -> dict[str, Any] | None:
        view = master.api("/api/nodes/node-1/processes")
        return view if view["processes"] else None

    view = wait_for(served, 20, "node-1's processes")
    assert set(view) == {"ts", "processes"} and abs(view["ts"] - time.time()) < 30
    rows = view["processes"]
    assert 0 < len(rows) <= 10 and len({r["pid"] for r in rows}) == len(rows)
    for row in rows:
        assert set(row) == {"name", "pid", "cpu", "rss"}
        assert 0 <= row["cpu"] <= 100 * (os.cpu_count() or 1) + 50 and row["rss"] >= 0
    # names and pids of this machine's processes (one may have ended since)
    assert any(comm(r["pid"]) == r["name"] for r in rows), rows
    assert max(r["rss"] for r in rows) > 1 << 20

    wait_for(lambda: master.api("/api/nodes/node-2")["sample"], 10, "node-2's sample")
    time.sleep(1)  # ten intervals: node-2 would have sent them by now
    assert master.api("/api/nodes/node-2/processes") == {"ts": None, "processes": []}
    missing = get(master, "/api/nodes/nobody/processes")
    assert missing.status_code == 404
    node = master.api("/api/nodes/node-1")
    assert node["filesystems"] and {"mount", "total", "used", "free", "used_percent"} == set(
        node["filesystems"][0]
    )
    root = next(fs for fs in node["filesystems"] if fs["mount"] == "/")
    assert root["used_percent"] == round(100 * root["used"] / root["total"], 1)
    assert "filesystems" not in master.api("/api/nodes")[0]  # the list stays small
    assert master.stats()["rejected"] == {}


@pytest.mark.slow
def test_hostile_process_datagrams_are_refused_counted_and_the_master_serves_on(
    start_master: Any,
) -> None:
    master: Master = start_master(interval=0.2)
    boot = 1_700_000_000
    master.send(sample_body("node-1", 1, boot=boot))
    wait_for(lambda: get(master, "/api/nodes/node-1").status_code == 200, 10, "node-1")

    def body(seq: int, rows: Any, **fields: Any) -> dict[str, Any]:
        out = {"v": 1, "node": "node-1", "boot": boot, "seq": seq, "ts": time.time(),
               "procs": rows}  # fmt: skip
        out.update(fields)
        return out

    good = [["ffmpeg", 2540, 28.5, 4096]]
    hostile: list[tuple[bytes | dict[str, Any], str]] = [
        (body(2, [["x" * 16, 1, 1.0, 1]]), "bad_text"),
        (body(3, [["a\nb", 1, 1.0, 1]]), "bad_text"),
        (body(4, [["p", 1, 1.0, 1]] * 11), "bad_shape"),
        (body(5, [["p", 0, 1.0, 1]]), "bad_value"),
        (body(6, [["p", 1, -5.0, 1]]), "bad_value"),
        (body(7, [["p", 1, 1.0, 2**64]]), "bad_value"),
        (body(8, {"p": 1}), "bad_shape"),
        (master.signed(json.dumps(body(9, good)).replace("28.5", "1e999")), "bad_value"),
        (json.dumps(body(10, good)).encode(), "unsigned"),
        (body(11, good, node="node-9"), "unknown_node"),
        (body(12, good, ts=time.time() - 3600), "clock_skew"),
        (body(1, good), "replay"),
    ]
    for data, _reason in hostile:
        master.send(data)
    expected: dict[str, int] = {}
    for _data, why in hostile:
        expected[why] = expected.get(why, 0) + 1
    wait_for(
        lambda: all(master.rejected(why) == n for why, n in expected.items()),
        10,
        f"the rejections {expected}",
    )
    assert master.api("/api/nodes/node-1/processes") == {"ts": None, "processes": []}
    master.send(body(13, good))
    view = wait_for(
        lambda: (v := master.api("/api/nodes/node-1/processes"))["processes"] and v, 10, "good"
    )
    assert view["processes"] == [{"name": "ffmpeg", "pid": 2540, "cpu": 28.5, "rss": 4096}]
    assert master.proc.poll() is None and master.stats()["accepted"] == 2
