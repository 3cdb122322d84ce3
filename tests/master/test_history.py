"""History store: the head and its flushes, tiers, roll-up, retention, bounds, restart."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from bramble.master.health import Health
from bramble.master.history import (
    COLUMNS,
    TIER_ID,
    History,
    HistoryWriter,
    decode_rows,
    metric_row,
)
from bramble.master.history_reader import HistoryReader
from bramble.master.views import Change
from bramble.telemetry.wire import Sample

SAMPLE = Sample(
    1500,
    50.0,
    0.25,
    (1.0, 0.5, 0.25),
    {"MemTotal": 1000, "MemAvailable": 400, "SwapTotal": 100, "SwapFree": 60},
    cores=(0.2, 0.3),
    disk={"total": 10, "used": 4, "free": 6},
)
T0 = 1_800_000_000  # a whole hour


def blocks(path: Path) -> dict[str, int]:
    """Blocks per tier."""
    with sqlite3.connect(path) as db:
        return {
            t: db.execute("SELECT COUNT(*) FROM blocks WHERE tier = ?", (i,)).fetchone()[0]
            for t, i in TIER_ID.items()
        }


def stored_rows(path: Path, tier: str = "raw") -> int:
    """Rows in TIER's blocks."""
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT data FROM blocks WHERE tier = ?", (TIER_ID[tier],))
        return sum(len(decode_rows(d)) for (d,) in found)


def fill(
    history: History, start: int, seconds: int, nodes: tuple[str, ...] = ("n1",), every: int = 60
) -> None:
    """SECONDS of 1 Hz samples from START, flushed (and rolled up) every EVERY seconds."""
    for t in range(start, start + seconds):
        rows = []
        for i, node in enumerate(nodes):
            values = list(metric_row(SAMPLE, 100.0, 200.0))
            values[0] = (t - start) % 60 / 100 + i * 0.1  # cpuusage varies over each minute
            rows.append((node, float(t), tuple(values), (0.2, 0.3)))
        history.write(rows)
        if (t + 1) % every == 0:
            history.flush(t + 1.0)


def test_metric_row_derives_memory_and_load() -> None:
    row = dict(zip(COLUMNS, metric_row(SAMPLE, 1.5, 2.5), strict=True))
    assert row["mem_used"] == 600 and row["mem_total"] == 1000 and row["mem_available"] == 400
    assert row["swap_used"] == 40 and row["disk_used"] == 4
    assert (row["load1"], row["load5"], row["load15"]) == (1.0, 0.5, 0.25)
    assert (row["net_rx"], row["net_tx"]) == (1.5, 2.5)


def test_blocks_roll_up_into_minutes_and_hours(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    history = History(db).open()
    fill(history, T0, 2 * 3600 + 60)  # two hours of 1 Hz samples, and a minute
    now = T0 + 2 * 3600 + 60
    assert stored_rows(db) == 7260
    assert stored_rows(db, "minute") == 120 and stored_rows(db, "hour") == 2
    # merged once rolled up: raw blocks per 10 minutes, minute blocks per hour
    assert blocks(db) == {"raw": 12 + 1, "minute": 2, "hour": 2}
    reader = HistoryReader(db, history.keep, history).open()
    # 10 minutes ago at 1 s step: raw tier, one point per second
    raw = reader.node_series("n1", ["cpuusage", "core.1"], now - 600, 1, now)
    assert len(raw["cpuusage"]) == 600 and raw["core.1"][0][1] == 0.3
    # minute averages of 0.00 .. 0.59 are 0.295
    minutes = reader.node_series("n1", ["cpuusage"], T0, 60, now)["cpuusage"]
    assert len(minutes) == 121 and all(abs(v - 0.295) < 1e-3 for _, v in minutes)
    hours = reader.node_series("n1", ["cpuusage"], T0, 3600, now)["cpuusage"]
    assert [t for t, _ in hours] == [T0, T0 + 3600, T0 + 7200]
    # unknown node: empty series, no error
    assert reader.node_series("nope", ["cpuusage"], T0, 60, now) == {"cpuusage": []}
    reader.close()
    history.close()


def test_the_head_is_read_before_it_is_written_and_counted_once(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    history = History(db).open()
    reader = HistoryReader(db, history.keep, history).open()
    fill(history, T0, 90, nodes=("n1", "n2"))  # one flush at T0 + 60, 30 s in the head
    assert stored_rows(db) == 120 and history.head_rows == 60
    now = T0 + 90.0

    def points() -> tuple[int, list[tuple[float, float]]]:
        series = reader.node_series("n1", ["cpuusage"], T0, 1, now)["cpuusage"]
        return len(series), reader.cluster_series("mem_used", T0, 30, now)

    before = points()
    assert before[0] == 90 and before[1] == [(T0, 1200.0), (T0 + 30, 1200.0), (T0 + 60, 1200.0)]
    history.flush(now)
    assert history.head_rows == 0 and stored_rows(db) == 180
    assert points() == before
    reader.close()
    history.close()


def test_every_sample_is_a_row_late_ones_too(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    history = History(db).open()
    values = metric_row(SAMPLE, 0.0, 0.0)
    # two samples in one second, then one that arrives after a later one was written
    history.write([("n1", T0 + 0.1, values, ()), ("n1", T0 + 0.9, values, ())])
    history.write([("n1", T0 + 5.0, values, (0.5,))])
    history.flush(T0 + 6.0)
    history.write([("n1", T0 + 3.0, values, (0.25,))])
    history.close()
    assert stored_rows(db) == 4
    reader = HistoryReader(db, history.keep).open()
    series = reader.node_series("n1", ["cpuusage", "core.0"], T0, 1, T0 + 10.0)
    assert [t for t, _ in series["cpuusage"]] == [T0, T0 + 3, T0 + 5]
    assert series["core.0"] == [(T0 + 3, 0.25), (T0 + 5, 0.5)]  # rows without cores: none
    reader.close()


def test_warming_decodes_the_cluster_charts_blocks_ahead(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db").open()
    now = int(time.time())
    fill(history, now - 600, 600, nodes=("n1", "n2"))
    reader = HistoryReader(tmp_path / "h.db", history.keep).open()
    reader.warm(("cpuusage",))
    cached = dict(reader._cache)
    # the roll-up answers for whole buckets: at most a block per node for the first one
    assert len(cached) <= 2 < blocks(tmp_path / "h.db")["raw"]
    reader.cluster_series("cpuusage", now - 3600.0, 12, time.time())
    assert dict(reader._cache) == cached  # nothing new to decode
    reader.close()
    history.close()


def test_tier_choice_follows_the_range(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db", raw_hours=1, minute_days=1, hour_days=30).open()
    reader = HistoryReader(tmp_path / "h.db", history.keep).open()
    now = float(T0)
    assert reader._tier(now - 600, now, 1) == ("raw", 1)
    assert reader._tier(now - 600, now, 60) == ("minute", 60)
    assert reader._tier(now - 6 * 3600, now, 1) == ("minute", 60)  # raw no longer covers it
    assert reader._tier(now - 7 * 86400, now, 1) == ("hour", 3600)
    start, step = HistoryReader.resolve(-86400, None, now)
    assert start == now - 86400 and step * 2000 >= 86400  # bounded number of points
    reader.close()
    history.close()


def test_retention_prunes_each_tier(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    history = History(db, raw_hours=1, minute_days=1 / 24 * 2, hour_days=1).open()
    history.write([], [Change(ts=float(T0), node="n1", kind="new", message="n1 appeared")])
    fill(history, T0, 3 * 3600, nodes=("n1", "n2"))
    history.flush(T0 + 3 * 3600 + 10.0)  # the last minute has had its grace for late ones
    assert stored_rows(db) == 2 * 3600  # the last hour only
    assert stored_rows(db, "minute") >= 2 * 120 - 2  # the last two hours
    assert stored_rows(db, "hour") == 2 * 3
    # a day later everything but the hour tier is gone, and two days later that too
    history.flush(T0 + 3 * 3600 + 86400 - 3600)
    assert blocks(db)["raw"] == 0 and blocks(db)["minute"] == 0
    history.flush(T0 + 3 * 86400)
    assert blocks(db) == {"raw": 0, "minute": 0, "hour": 0}
    reader = HistoryReader(db, history.keep).open()
    assert reader.changes(10) == []
    reader.close()
    history.close()


def test_cluster_aggregate_mean_and_sum(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db").open()
    fill(history, T0, 120, nodes=("n1", "n2"))
    reader = HistoryReader(tmp_path / "h.db", history.keep).open()
    now = float(T0 + 120)
    cpu = reader.cluster_series("cpuusage", T0, 60, now)
    mem = reader.cluster_series("mem_used", T0, 60, now)
    assert len(cpu) == 2 and abs(cpu[0][1] - (0.295 + 0.395) / 2) < 1e-3
    assert mem == [(T0, 1200.0), (T0 + 60, 1200.0)]
    reader.close()
    history.close()


def test_survives_restart_and_a_clean_close_writes_the_head(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    history = History(db).open()
    fill(history, T0, 30, nodes=("n1", "n2"))  # never flushed by time: close writes it
    history.write([], [Change(ts=T0 + 5.0, node="n2", kind="rebooted", message="n2 rebooted")])
    history.close()

    again = History(db).open()
    assert again.node_id("n2") == 2  # ids kept across restarts
    fill(again, T0 + 30, 30, nodes=("n2",))
    reader = HistoryReader(db, again.keep).open()
    series = reader.node_series("n2", ["cpuusage"], T0, 1, T0 + 60.0)["cpuusage"]
    assert len(series) == 60
    assert reader.changes(5) == [
        Change(ts=T0 + 5.0, node="n2", kind="rebooted", message="n2 rebooted")
    ]
    reader.close()
    again.close()


def test_the_store_stays_within_its_bytes_and_changes(tmp_path: Path) -> None:
    # a flood of node names, of rows and of changes: time limits alone would keep them all
    history = History(tmp_path / "h.db", max_bytes=1 << 20, max_changes=500).open()
    names = tuple(f"fake-{i}" for i in range(100))
    history.write(
        [], [Change(ts=T0 + i, node=f"fake-{i}", kind="new", message="x") for i in range(2000)]
    )
    for minute in range(8):  # large blocks of values that do not compress
        for t in range(T0 + minute * 60, T0 + minute * 60 + 60):
            history.write(
                [
                    (n, float(t), tuple(float(hash((n, t, k)) % 10**9) for k in range(13)), ())
                    for n in names
                ]
            )
        history.flush(T0 + minute * 60 + 60.0)
        assert history.used_bytes() <= 1 << 20
    assert stored_rows(tmp_path / "h.db") < 8 * 60 * 100  # some had to go
    with sqlite3.connect(tmp_path / "h.db") as db:
        assert db.execute("SELECT COUNT(*) FROM changes").fetchone()[0] <= 500
        kept = db.execute("SELECT MIN(start) FROM blocks WHERE tier = 0").fetchone()[0]
    assert kept > T0 * 1000  # the oldest blocks went first
    history.close()


def test_a_failed_flush_keeps_the_head_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "h.db"
    history = History(db).open()
    fill(history, T0, 2, every=10**9)
    monkeypatch.setattr(history, "_roll_up", lambda now: history.db.execute("SELECT nope"))
    with pytest.raises(sqlite3.Error):
        history.flush(T0 + 2.0)
    assert history.head_rows == 2 and stored_rows(db) == 0
    monkeypatch.undo()
    fill(history, T0 + 2, 2, ("n1", "n3"), every=10**9)
    history.flush(T0 + 4.0)
    assert stored_rows(db) == 6 and history.head_rows == 0
    history.close()


def test_the_writer_flushes_on_time_and_at_close(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    health = Health()
    history = History(db).open()
    writer = HistoryWriter(history, flush_seconds=0.3, health=health)
    writer.start()
    now = time.time()
    writer.put([("n1", now, metric_row(SAMPLE, 0.0, 0.0), ())], [])
    deadline = time.monotonic() + 5
    while stored_rows(db) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored_rows(db) == 1
    view = health.view()
    assert view.history_flush_seconds == 0.3 and view.history_flushed is not None
    assert view.history_flushed >= now - 1
    writer.put([("n1", now + 1, metric_row(SAMPLE, 0.0, 0.0), ())], [])
    writer.flush_seconds = 3600.0
    writer.close()
    assert stored_rows(db) == 2
    history.close()
