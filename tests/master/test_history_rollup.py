"""The roll-up the cluster charts read: the same charts as the raw blocks and the head give,
late rows, restarts, an upgraded store, retention and bounds included."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from bramble.master.history import COLUMNS, ROLLUP_MS, History, encode_sums
from bramble.master.history_reader import HistoryReader
from bramble.tsdb.codec import BlockError

T0 = 1_800_000_000
NODES = tuple(f"n{i}" for i in range(6))


def feed(history: History, rng: random.Random, start: float, seconds: int) -> float:
    """SECONDS of NODES at about 1 Hz from START, flushed at uneven times, with late rows,
    a node whose clock is ahead and one that comes later; the time it ends."""
    now = start
    next_flush = start + rng.uniform(20, 70)
    for s in range(seconds):
        now = start + s
        rows = []
        for node in NODES:
            if node == "n5" and s < seconds // 3:
                continue  # comes later
            ts = now + rng.randrange(1000) / 1000 + (40 if node == "n4" else 0)
            values = [rng.uniform(0, 1), rng.uniform(30, 80), rng.choice((600, 1500))]
            values += [rng.uniform(0, 4) for _ in range(3)]
            values += [rng.randrange(1 << 22) for _ in range(4)]
            values += [rng.randrange(1 << 34), rng.uniform(0, 1e6), rng.uniform(0, 1e5)]
            values += [rng.uniform(0, 1e7) for _ in COLUMNS[len(values) :]]  # disk_read, ...
            rows.append((node, ts, tuple(values), (rng.random(), rng.random())))
        if s % 97 == 50:  # a datagram that was held up for half a minute
            rows.append(("n2", now - 30.25, rows[0][2], ()))
        history.write(rows)
        if now >= next_flush:
            history.flush(now)
            next_flush = now + rng.uniform(5, 70)
    return now + 1


def charts(path: Path, history: History | None, now: float) -> list[object]:
    """Every metric's cluster charts as the roll-up gives them and as the blocks do."""
    out = []
    for rollup in (True, False):
        reader = HistoryReader(path, History(path).keep, history, rollup=rollup).open()
        got = []
        for metric in COLUMNS:
            for since, step, until in (
                (now - 3600, 12.0, None),  # the dashboard's
                (now - 3600 + 0.5, 12.0, None),
                (now - 1800, 24.0, now - 7.3),
                (now - 900, 12.0, now - 60),
                (now - 600, 13.0, None),  # a step the roll-up does not divide
            ):
                got.append(
                    (metric, since, step, reader.cluster_series(metric, since, step, now, until))
                )
        reader.close()
        out.append(got)
    return out


def decoded(path: Path, history: History | None, now: float, rollup: bool) -> int:
    """Blocks a cold reader decodes for the 1 h CPU chart."""
    reader = HistoryReader(path, History(path).keep, history, rollup=rollup).open()
    assert reader.cluster_series("cpuusage", now - 3600, 12, now)
    reader.close()
    return len(reader._cache)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_rollup_gives_the_charts_of_the_blocks_and_head(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "h.db"
    history = History(path).open()
    now = feed(history, rng, T0, 3700)
    assert history.head_rows  # some rows are still in memory
    with_rollup, from_blocks = charts(path, history, now)
    assert with_rollup == from_blocks
    assert all(points for *_, points in with_rollup)
    # and the roll-up is what is read: the blocks only for the partial first bucket
    assert decoded(path, history, now, True) <= 2 * len(NODES)
    assert decoded(path, history, now, False) > 5 * len(NODES)


def test_the_rollup_holds_across_restarts_and_kills(tmp_path: Path) -> None:
    rng = random.Random(3)
    path = tmp_path / "h.db"
    history = History(path).open()
    now = feed(history, rng, T0, 1200)
    history.close()  # a clean stop writes the head
    history = History(path).open()
    now = feed(history, rng, now, 600)
    # a kill: the head is lost, to the roll-up as to the blocks
    history = History(path).open()
    now = feed(history, rng, now + 5, 900)
    with_rollup, from_blocks = charts(path, history, now)
    assert with_rollup == from_blocks
    history.close()
    with_rollup, from_blocks = charts(path, None, now)
    assert with_rollup == from_blocks


def test_a_store_from_before_the_rollup_gets_one_from_its_next_row(tmp_path: Path) -> None:
    rng = random.Random(4)
    path = tmp_path / "h.db"
    history = History(path).open()
    now = feed(history, rng, T0, 900)
    history.close()
    with sqlite3.connect(path) as db:  # as a store written before the roll-up was
        db.execute("DROP TABLE rollup")
        db.execute("DELETE FROM meta WHERE key = 'rollup.since'")
        last = db.execute("SELECT MAX(end) FROM blocks WHERE tier = 0").fetchone()[0]
    history = History(path).open()
    with sqlite3.connect(path) as db:
        since = db.execute("SELECT value FROM meta WHERE key = 'rollup.since'").fetchone()[0]
    assert since == (last // ROLLUP_MS + 1) * ROLLUP_MS
    now = feed(history, rng, now, 1500)
    with_rollup, from_blocks = charts(path, history, now)
    assert with_rollup == from_blocks


def test_retention_and_bounds_cut_the_rollup_with_the_blocks(tmp_path: Path) -> None:
    rng = random.Random(5)
    path = tmp_path / "h.db"
    history = History(path, raw_hours=0.5, max_bytes=400_000).open()
    now = feed(history, rng, T0, 4000)
    with sqlite3.connect(path) as db:
        since = db.execute("SELECT value FROM meta WHERE key = 'rollup.since'").fetchone()[0]
        first = db.execute("SELECT MIN(bucket) FROM rollup").fetchone()[0]
    assert since > T0 * 1000 + 1800_000 and first * ROLLUP_MS >= since
    with_rollup, from_blocks = charts(path, history, now)
    assert with_rollup == from_blocks


def test_a_damaged_rollup_bucket_leaves_the_chart_to_the_blocks(tmp_path: Path) -> None:
    rng = random.Random(6)
    path = tmp_path / "h.db"
    history = History(path).open()
    now = feed(history, rng, T0, 600)
    with sqlite3.connect(path) as db:
        bucket = db.execute("SELECT MAX(bucket) FROM rollup").fetchone()[0]
        db.execute("UPDATE rollup SET data = ? WHERE bucket = ?", (b"\x01garbage", bucket))
    with_rollup, from_blocks = charts(path, history, now)
    assert with_rollup == from_blocks
    feed(history, rng, now, 120)  # the writer meets it too, and goes on
    with pytest.raises(BlockError):
        from bramble.master.history import SumsBlock

        SumsBlock(b"\x01garbage")


def test_sums_beyond_64_bits_are_refused() -> None:
    with pytest.raises(OverflowError):
        encode_sums({1: [1, 1 << 70]}, 1)


def test_a_rollup_bucket_round_trips_at_every_width() -> None:
    from bramble.master.history import SumsBlock

    per = {3: [1, -5, 1 << 40], 70_000: [12, 300, -(1 << 62)], 7: [2, 0, 127]}
    block = SumsBlock(encode_sums(per, 2))
    assert list(block.ids) == [3, 7, 70_000] and list(block.counts) == [1, 2, 12]
    assert block.sums() == per
    for cut in (0, 5, 20):
        with pytest.raises(BlockError):
            SumsBlock(encode_sums(per, 2)[:cut]).column(1)
