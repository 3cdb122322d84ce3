"""History from before blocks: the tables `raw`, `minute` and `hour` (a row per node and
second, minute or hour, a column per metric, per-core usage as text) converted into blocks
once, at start, node by node with progress in the log, in one transaction: a master stopped
halfway converts again from the start the next time, and nothing is lost or counted twice.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from bramble.master.history import (
    COLUMNS,
    INSERT,
    LEGACY_METRICS,
    TIER_ID,
    TIERS,
    History,
    encode_rows,
    to_row,
)

log = logging.getLogger(__name__)
OLD_TABLES = tuple(t for t, _ in TIERS)


def old_tables(db: sqlite3.Connection) -> list[str]:
    """The tables of the old layout that DB still has."""
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [t for t in OLD_TABLES if t in names]


def migrate(history: History, progress: Callable[[str], None] = log.info) -> int:
    """Convert HISTORY's old tables into blocks and drop them; rows converted (0 when there
    were none). PROGRESS is told how far it has got, about once a second."""
    db = history.db
    tables = old_tables(db)
    if not tables:
        return 0
    total = sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)
    progress(f"history: converting {total} rows of the old tables into blocks, once")
    done, last = 0, time.monotonic()
    try:
        for table in tables:
            have = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            metrics = [c for c in COLUMNS if c in have]
            # the old tables had the first 13 metrics at most: blocks of that layout
            layout = LEGACY_METRICS if set(COLUMNS[LEGACY_METRICS:]).isdisjoint(have) else None
            wanted = COLUMNS[:layout]
            picks = [metrics.index(c) if c in metrics else None for c in wanted]
            cores = "cores" if "cores" in have else "''"
            nodes = [r[0] for r in db.execute(f"SELECT DISTINCT node FROM {table}")]
            for node in nodes:
                rows = []
                found = db.execute(
                    f"SELECT ts, {', '.join(metrics) or '0'}, {cores} FROM {table} "
                    "WHERE node = ? ORDER BY ts",
                    (node,),
                )
                for ts, *values, text in found:
                    row = [0.0 if p is None or values[p] is None else values[p] for p in picks]
                    per_core = [float(x) for x in (text or "").split(",") if x]
                    rows.append(to_row(float(ts), row, per_core))
                db.executemany(
                    INSERT,
                    [(TIER_ID[table], node, *b, len(wanted)) for b in encode_rows(rows)],
                )
                done += len(rows)
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    progress(f"history: converted {done} of {total} rows ({done * 100 // total} %)")
            db.execute(f"DROP TABLE {table}")
        db.commit()
    except sqlite3.Error:
        db.rollback()
        raise
    progress(f"history: converted {done} rows of the old tables into blocks")
    return done
