"""History store: tiers, roll-up, retention, restart, tier choice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bramble.master.history import COLUMNS, TIERS, History, HistoryReader, metric_row
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


def counts(reader: HistoryReader) -> dict[str, int]:
    """Rows per tier."""
    with sqlite3.connect(reader.path) as db:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t, _ in TIERS}


def fill(history: History, start: int, seconds: int, nodes: tuple[str, ...] = ("n1",)) -> None:
    rows = []
    for t in range(start, start + seconds):
        for i, node in enumerate(nodes):
            values = list(metric_row(SAMPLE, 100.0, 200.0))
            values[0] = (t - start) % 60 / 100 + i * 0.1  # cpuusage varies over each minute
            rows.append((node, float(t), tuple(values), (0.2, 0.3)))
    history.write(rows)


def test_metric_row_derives_memory_and_load() -> None:
    row = dict(zip(COLUMNS, metric_row(SAMPLE, 1.5, 2.5), strict=True))
    assert row["mem_used"] == 600 and row["mem_total"] == 1000 and row["mem_available"] == 400
    assert row["swap_used"] == 40 and row["disk_used"] == 4
    assert (row["load1"], row["load5"], row["load15"]) == (1.0, 0.5, 0.25)
    assert (row["net_rx"], row["net_tx"]) == (1.5, 2.5)


def test_raw_rows_roll_up_into_minutes_and_hours(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    history = History(db).open()
    fill(history, T0, 2 * 3600)  # two hours of 1 Hz samples
    history.roll_up(T0 + 2 * 3600)
    reader = HistoryReader(db, history.keep).open()
    assert counts(reader) == {"raw": 7200, "minute": 120, "hour": 2}
    now = T0 + 2 * 3600
    # 10 minutes ago at 1 s step: raw tier, one point per second
    raw = reader.node_series("n1", ["cpuusage", "core.1"], now - 600, 1, now)
    assert len(raw["cpuusage"]) == 600 and raw["core.1"][0][1] == 0.3
    # minute averages of 0.00 .. 0.59 are 0.295
    minutes = reader.node_series("n1", ["cpuusage"], T0, 60, now)["cpuusage"]
    assert len(minutes) == 120 and all(abs(v - 0.295) < 1e-3 for _, v in minutes)
    # unknown node: empty series, no error
    assert reader.node_series("nope", ["cpuusage"], T0, 60, now) == {"cpuusage": []}
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
    history = History(tmp_path / "h.db", raw_hours=1, minute_days=1 / 24 * 2, hour_days=1).open()
    history.write([], [Change(ts=float(T0), node="n1", kind="new", message="n1 appeared")])
    for hour in range(3):  # as the service does: roll up while samples arrive
        fill(history, T0 + hour * 3600, 3600, nodes=("n1", "n2"))
        history.roll_up(T0 + (hour + 1) * 3600)
    reader = HistoryReader(tmp_path / "h.db", history.keep).open()
    rows = counts(reader)
    assert rows["raw"] == 2 * 3600  # the last hour only
    assert rows["minute"] == 2 * 120  # the last two hours
    assert rows["hour"] == 2 * 3
    # a day later everything but the hour tier is gone, and two days later that too
    history.roll_up(T0 + 3 * 3600 + 86400 - 3600)
    assert counts(reader)["raw"] == 0 and counts(reader)["minute"] == 0
    history.roll_up(T0 + 3 * 86400)
    assert counts(reader) == {"raw": 0, "minute": 0, "hour": 0}
    assert reader.changes(10) == []
    reader.close()
    history.close()


def test_cluster_aggregate_mean_and_sum(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db").open()
    fill(history, T0, 60, nodes=("n1", "n2"))
    history.roll_up(T0 + 60)
    reader = HistoryReader(tmp_path / "h.db", history.keep).open()
    now = float(T0 + 60)
    cpu = reader.cluster_series("cpuusage", T0, 60, now)
    mem = reader.cluster_series("mem_used", T0, 60, now)
    assert len(cpu) == 1 and abs(cpu[0][1] - (0.295 + 0.395) / 2) < 1e-3
    assert mem == [(T0, 1200.0)]
    reader.close()
    history.close()


def test_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    history = History(db).open()
    fill(history, T0, 30, nodes=("n1", "n2"))
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
    names = tuple(f"fake-{i}" for i in range(200))
    fill(history, T0, 60, names)  # 12,000 rows, about 2 MB
    history.write(
        [], [Change(ts=T0 + i, node=f"fake-{i}", kind="new", message="x") for i in range(2000)]
    )
    assert history.used_bytes() > 1 << 20
    history.roll_up(T0 + 60)
    assert history.used_bytes() <= 1 << 20
    with sqlite3.connect(tmp_path / "h.db") as db:
        assert db.execute("SELECT COUNT(*) FROM changes").fetchone()[0] <= 500
        kept = db.execute("SELECT MIN(ts) FROM raw").fetchone()[0]
    assert kept > T0  # the oldest rows went first
    history.close()


def test_a_failed_write_loses_only_its_batch(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db").open()
    fill(history, T0, 2)
    broken = [("n2", float(T0), (1.0,), ())]  # too few values: SQLite refuses the batch
    with pytest.raises(sqlite3.Error):
        history.write(broken)
    fill(history, T0 + 2, 2, ("n1", "n3"))
    reader = HistoryReader(tmp_path / "h.db", history.keep).open()
    assert counts(reader)["raw"] == 6
    history.close()
    reader.close()
