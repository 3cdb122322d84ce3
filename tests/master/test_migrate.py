"""A master upgraded from the row tables keeps its history: converted into blocks once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bramble.master.history import COLUMNS, LEGACY_METRICS, History
from bramble.master.history_reader import HistoryReader
from bramble.master.migrate import migrate, old_tables

T0 = 1_800_000_000


def old_store(path: Path) -> None:
    """A history database as the row engine left it: raw, minute and hour rows of two nodes
    (this one's columns less `net_tx`, as if it came from a release that had no such metric)."""
    columns = [c for c in COLUMNS[:LEGACY_METRICS] if c != "net_tx"]  # no board signals yet
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)")
    db.executemany("INSERT INTO nodes VALUES (?, ?)", [(1, "n1"), (2, "n2")])
    cols = ", ".join(f"{c} REAL" for c in columns)
    for tier in ("raw", "minute", "hour"):
        db.execute(
            f"CREATE TABLE {tier} (node INTEGER NOT NULL, ts INTEGER NOT NULL, {cols}, "
            "cores TEXT, PRIMARY KEY (node, ts)) WITHOUT ROWID"
        )
        db.execute(f"CREATE INDEX {tier}_ts ON {tier} (ts)")
    marks = ", ".join("?" * (len(columns) + 3))
    for node in (1, 2):
        raw = [
            (node, T0 + s, *[s / 100 if c == "cpuusage" else 1000.0 for c in columns], "0.2,0.3")
            for s in range(120)
        ]
        db.executemany(f"INSERT INTO raw VALUES ({marks})", raw)
        minute = [(node, T0 - 3600 + m * 60, *[0.5] * len(columns), "0.25") for m in range(60)]
        db.executemany(f"INSERT INTO minute VALUES ({marks})", minute)
        hour = (node, T0 - 7200, *[0.75] * len(columns), "")
        db.execute(f"INSERT INTO hour VALUES ({marks})", hour)
    db.execute("CREATE TABLE changes (ts REAL NOT NULL, node TEXT NOT NULL, kind TEXT NOT NULL, "
               "message TEXT NOT NULL)")  # fmt: skip
    db.execute("INSERT INTO changes VALUES (?, 'n1', 'new', 'n1 appeared')", (T0,))
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL NOT NULL)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("rolled.minute", T0), ("rolled.hour", T0)])
    db.commit()
    db.close()


def test_old_tables_become_blocks_once_with_progress(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    old_store(path)
    history = History(path).open()
    said: list[str] = []
    assert migrate(history, said.append) == 2 * (120 + 60 + 1)
    assert old_tables(history.db) == []
    assert said[0].startswith("history: converting 362 rows") and "converted 362" in said[-1]
    assert migrate(history, said.append) == 0  # once
    now = T0 + 120.0
    reader = HistoryReader(path, history.keep, history).open()
    raw = reader.node_series("n2", ["cpuusage", "core.1", "net_tx"], T0, 1, now)
    assert [v for _, v in raw["cpuusage"]] == [s / 100 for s in range(120)]
    assert raw["core.1"][0] == (T0, 0.3) and raw["net_tx"][0] == (T0, 0.0)
    # metrics stored since the old tables have no points there (not zeros)
    assert reader.node_series("n2", ["disk_read"], T0, 1, now) == {"disk_read": []}
    minutes = reader.node_series("n1", ["cpuusage", "core.0"], T0 - 3600, 60, now)
    assert len(minutes["cpuusage"]) == 60 + 2 and minutes["cpuusage"][0] == (T0 - 3600, 0.5)
    assert minutes["core.0"][0] == (T0 - 3600, 0.25)
    hours = reader.node_series("n1", ["cpuusage"], T0 - 7200, 3600, now)["cpuusage"]
    assert hours[0] == (T0 - 7200, 0.75)
    assert reader.cluster_series("mem_total", T0, 60, now) == [(T0, 2000.0), (T0 + 60, 2000.0)]
    assert reader.last_kinds() == {"n1": "new"}
    reader.close()
    history.close()
