"""Blocks say how many metric columns they hold: the board signals (disk and swap rates, the
fullest filesystem) are history columns now, and a store written before them still reads,
merges and rolls up, its cores where they were."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from bramble_testing import Master, sample_body, wait_for
from fastapi import FastAPI

from bramble.master.api import router
from bramble.master.history import (
    COLUMNS,
    LEGACY_METRICS,
    SCALES,
    History,
    encode_rows,
    metric_row,
)
from bramble.master.history_reader import HistoryReader
from bramble.telemetry.wire import Sample

T0 = 1_800_000_000  # a whole hour
SAMPLE = Sample(
    1500,
    50.0,
    0.25,
    (1.0, 0.5, 0.25),
    {"MemTotal": 1000, "MemAvailable": 400},
    cores=(0.5, 0.75),
    fs={"/": (1000, 900, 100)},
)
OLD = """
CREATE TABLE nodes (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE blocks (tier INTEGER NOT NULL, node INTEGER NOT NULL, start INTEGER NOT NULL,
    end INTEGER NOT NULL, rows INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX blocks_node ON blocks (tier, node, end);
CREATE INDEX blocks_end ON blocks (tier, end);
CREATE TABLE changes (ts REAL NOT NULL, node TEXT NOT NULL, kind TEXT NOT NULL,
    message TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


def old_store(path: Path, start: int, seconds: int) -> None:
    """A store as written before blocks said their layout: n1 at 1 Hz, 13 metrics (cpuusage
    0.1) then two cores (0.2, 0.3), in blocks of 60 s."""
    rows = []
    for t in range(start, start + seconds):
        ints = [round(v * s) for v, s in zip(metric_row(SAMPLE, 0, 0), SCALES, strict=False)]
        ints[0] = 1000  # cpuusage 0.1
        rows.append((t * 1000, (*ints[:LEGACY_METRICS], 2000, 3000)))
    with sqlite3.connect(path) as db:
        db.executescript(OLD)
        db.execute("INSERT INTO nodes VALUES (1, 'n1')")
        for i in range(0, len(rows), 60):
            db.executemany(
                "INSERT INTO blocks VALUES (0, 1, ?, ?, ?, ?)", encode_rows(rows[i : i + 60])
            )


def feed(history: History, start: int, seconds: int) -> None:
    """N1 at 1 Hz today: disk_read 5000 B/s, the fullest filesystem 90 %, cores 0.5, 0.75;
    flushed every 60 s."""
    for t in range(start, start + seconds):
        values = metric_row(SAMPLE, 0, 0, {"disk_read": 5000.0, "swap_out": 1.5})
        history.write([("n1", float(t), values, SAMPLE.cores)])
        if (t + 1) % 60 == 0:
            history.flush(t + 1.0)


def series(
    reader: HistoryReader, metric: str, since: int, step: float, now: int
) -> list[tuple[float, float]]:
    return reader.node_series("n1", [metric], since, step, now)[metric]


def test_a_store_from_before_reads_its_cores_where_they_were(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    old_store(path, T0, 1800)
    history = History(path).open()
    feed(history, T0 + 1800, 1800)  # the next half hour, with the new columns
    now = T0 + 3600
    reader = HistoryReader(path, history.keep, history).open()
    cpu = series(reader, "cpuusage", T0, 60, now)
    assert [v for _, v in cpu] == [0.1] * 30 + [0.25] * 30
    core = series(reader, "core.0", T0, 60, now)
    assert [v for _, v in core] == [0.2] * 30 + [0.5] * 30
    core1 = series(reader, "core.1", T0, 1, now)
    assert {v for t, v in core1 if t < T0 + 1800} == {0.3}
    assert {v for t, v in core1 if t >= T0 + 1800} == {0.75}
    # the new columns have no points before they were stored, rather than zeros
    disk = series(reader, "disk_read", T0, 60, now)
    assert [t for t, _ in disk] == [float(T0 + 1800 + 60 * i) for i in range(30)]
    assert {v for _, v in disk} == {5000.0}
    assert {v for _, v in series(reader, "swap_out", T0, 60, now)} == {1.5}
    assert {v for _, v in series(reader, "fs_used_percent_max", T0, 60, now)} == {90.0}
    cluster = reader.cluster_series("cpuusage", T0, 12, now)
    assert {v for _, v in cluster} == {0.1, 0.25}
    reader.close()
    history.close()


def test_old_and_new_blocks_merge_and_roll_up_apart(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    old_store(path, T0, 1230)  # the old layout ends in the middle of a 10-minute window
    history = History(path).open()
    feed(history, T0 + 1230, 2370)
    history.flush(T0 + 3 * 3600.0)  # rolls the hour up
    with sqlite3.connect(path) as db:
        layouts = dict(db.execute("SELECT metrics, COUNT(*) FROM blocks GROUP BY metrics"))
    assert layouts.keys() == {LEGACY_METRICS, len(COLUMNS)}
    reader = HistoryReader(path, history.keep, history).open()
    now = T0 + 3 * 3600
    minute = series(reader, "core.0", T0, 60, now)
    assert len(minute) == 60
    assert [v for _, v in minute[:20]] == [0.2] * 20 and {v for _, v in minute[21:]} == {0.5}
    assert 0.2 < minute[20][1] < 0.5  # the minute of the upgrade averages both
    hour = series(reader, "cpuusage", T0, 3600, now)
    assert len(hour) == 1 and 0.1 < hour[0][1] < 0.25
    assert len(series(reader, "disk_read", T0, 60, now)) == 40
    reader.close()
    history.close()


class NoNodes:
    """A node table without nodes: the history routes answer from history alone."""

    def node(self, name: str) -> None:
        return None


def test_the_history_route_serves_the_board_signals(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    history = History(path).open()
    start = int(time.time()) // 60 * 60 - 600
    feed(history, start, 120)
    app = FastAPI()
    app.include_router(router(NoNodes(), HistoryReader(path, history.keep, history).open()))  # type: ignore[arg-type]

    async def get(route: str, params: dict[str, object]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://master") as c:
            return await c.get(route, params=params)  # type: ignore[arg-type]

    since, until = start, start + 120
    got = asyncio.run(
        get("/api/nodes/n1/history", {"metric": "disk_read", "since": since, "until": until})
    )
    assert got.status_code == 200, got.text
    assert {v for _, v in got.json()["points"]} == {5000.0}
    got = asyncio.run(
        get(
            "/api/cluster/history",
            {"metric": "fs_used_percent_max", "since": since, "until": until},
        )
    )
    assert got.status_code == 200, got.text
    assert {v for _, v in got.json()["points"]} == {90.0}
    history.close()


@pytest.mark.slow
def test_a_masters_history_keeps_the_rates_it_derives(start_master: Callable[..., Master]) -> None:
    master = start_master(nodes=2, interval=1.0)
    start = int(time.time()) - 10 + 0.5
    for seq in range(1, 6):  # 4096 bytes read and 2 pages swapped out a second
        body = sample_body("node-1", seq, ts=start + seq - 1, diskio=[4096 * seq, 0])
        body["swap"] = [0, 2 * seq]
        body["fs"] = {"/": [1000, 250, 750]}
        master.send(body)
        master.send(sample_body("node-2", seq, ts=start + seq - 1))  # none of them
    wait_for(lambda: master.stats()["accepted"] == 10, 10, "all accepted")

    def points(metric: str) -> list[list[float]]:
        got = master.api("/api/nodes/node-1/history", metric=metric, since=-60, step=1)
        return list(got["points"])

    wait_for(lambda: len(points("disk_read")) == 5, 10, "the samples in history")
    # the first sample has no rate yet (0 in history), the next four have theirs
    assert [v for _, v in points("disk_read")] == [0.0, 4096.0, 4096.0, 4096.0, 4096.0]
    assert [v for _, v in points("swap_out")] == [0.0, 2.0, 2.0, 2.0, 2.0]
    assert {v for _, v in points("fs_used_percent_max")} == {25.0}
    # a node that reports none of them has no points for them: absent, not the 0 kept
    wait_for(lambda: master.api("/api/nodes/node-2/history", metric="cpuusage", since=-60,
                                step=1)["points"], 10, "node-2 in history")  # fmt: skip
    for metric in ("disk_read", "swap_out", "fs_used_percent_max"):
        got = master.api("/api/nodes/node-2/history", metric=metric, since=-60, step=1)
        assert got["points"] == [], metric
    both = master.api("/api/nodes/node-2/history", metric="cpuusage,disk_write", since=-60)
    assert both["series"]["disk_write"] == [] and both["series"]["cpuusage"]
