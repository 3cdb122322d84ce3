"""Reads of history for the API and the dashboard: a node's metrics and the cluster's, over
time, from the blocks on disk and the head still in memory, averaged into steps.

`HistoryReader` reads on a connection of its own, beside the writer (WAL), and sees the head
through the `History` it is given. A query picks the coarsest tier that covers its range at
its step, reads the finer tiers (and the head) for what that tier has not rolled up yet, and
sums each block's values into the step's buckets from the running sums of its column, which
are cached: blocks never change (a merged block is a new one).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from bisect import bisect_left
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from itertools import accumulate, pairwise
from operator import truediv
from pathlib import Path

from bramble.master.history import (
    MAX_POINTS,
    MS,
    ROLLUP_MS,
    SCALES,
    TIER_ID,
    TIERS,
    History,
    Rows,
    SumsBlock,
    column_in,
    column_of,
    scale_of,
)
from bramble.master.views import Change, Point
from bramble.telemetry.metrics import BY_NAME
from bramble.tsdb.codec import Block, BlockError

log = logging.getLogger(__name__)


class Grid:
    """Sums and counts of one series' values in STEP-ms buckets, from bucket FIRST on
    (a bucket's number is its start over STEP); grown when values come later."""

    __slots__ = ("counts", "first", "high", "low", "step", "sums")

    def __init__(self, first: int, size: int, step: int) -> None:
        self.first, self.step = first, step
        self.sums = [0] * size
        self.counts = [0] * size
        self.low, self.high = size, 0
        """The buckets values were added to are among these (indexes, from and to)."""

    def add(self, times: Sequence[int], prefix: Sequence[int], lo: int, hi: int) -> None:
        """Add the values at TIMES (sorted, ms) from LO to HI; PREFIX holds their running
        sums (PREFIX[i] is the sum of the first i values)."""
        step = self.step
        i = bisect_left(times, max(lo, self.first * step))
        end = bisect_left(times, hi)
        if i >= end:
            return
        first, last = times[i] // step, times[end - 1] // step
        bounds = [i]
        bounds += [bisect_left(times, (b + 1) * step, i, end) for b in range(first, last)]
        bounds.append(end)
        k = first - self.first
        grow = k + len(bounds) - len(self.sums)
        if grow > 0:
            self.sums += [0] * grow
            self.counts += [0] * grow
        sums, counts = self.sums, self.counts
        self.low, self.high = min(self.low, k), max(self.high, k + len(bounds) - 1)
        for a, c in pairwise(bounds):
            if c > a:
                sums[k] += prefix[c] - prefix[a]
                counts[k] += c - a
            k += 1

    def means(self) -> list[tuple[int, float]]:
        """Each bucket that has values: its number and their mean."""
        first = self.first
        return [
            (first + k, s / n)
            for k, (s, n) in enumerate(zip(self.sums, self.counts, strict=True))
            if n
        ]


Parts = dict[int, list[tuple[Sequence[int], Sequence[int], Sequence[int]]]]
"""Roll-up buckets by chart bucket: each one's node ids, counts and sums of one metric."""


class HistoryReader:
    """Read-only queries on a connection of their own, merging the blocks on disk with the
    head of STORE (the writer's `History`) when given. Decoded columns are cached (blocks
    never change; a merged block is a new one). A cluster chart whose step is a multiple of
    the roll-up's buckets reads the roll-up for its whole buckets (unless ROLLUP is False:
    the blocks alone, to compare), the blocks only for a partial bucket at either end."""

    def __init__(
        self,
        path: Path,
        keep: dict[str, float],
        store: History | None = None,
        *,
        cache: int = 20_000,
        rollup: bool = True,
    ) -> None:
        self.path = path
        self._keep = keep
        self.store = store
        self.rollup = rollup
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int, int, int, int], tuple[list[int], list[int]]]
        self._cache = OrderedDict()
        self._cache_size = cache

    def open(self) -> HistoryReader:
        """Open the database read-only (`History.open` creates it); this reader, for chaining."""
        self._connection = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
        )
        return self

    def close(self) -> None:
        """Close the reader connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:  # not there at start (a disk that failed): try again
            self.open()
        assert self._connection is not None
        return self._connection

    def _tier(self, since: float, now: float, step: float) -> tuple[str, int]:
        """The coarsest tier that still covers SINCE and is no coarser than STEP."""
        covering = [(t, w) for t, w in TIERS if since >= now - self._keep[t]]
        fitting = [(t, w) for t, w in covering if w <= step]
        if fitting:
            return fitting[-1]
        return covering[0] if covering else TIERS[-1]

    @staticmethod
    def resolve(
        since: float | None, step: float | None, now: float, until: float | None = None
    ) -> tuple[float, float]:
        """Absolute SINCE (negative means seconds ago; default 15 min before UNTIL) and a sane
        STEP for the range up to UNTIL (epoch seconds; default NOW)."""
        end = now if until is None else until
        start = end - 900 if since is None else (now + since if since <= 0 else since)
        span = max(1.0, end - start)
        least = span / MAX_POINTS
        chosen = max(step or 0.0, least, 1.0)
        if step is None:
            chosen = max(chosen, span / 300)
        return start, float(math.ceil(chosen))

    def _ranges(self, tier: str, since: float, until: float | None) -> list[tuple[str, int, int]]:
        """Where each part of the time from SINCE to UNTIL (None: whatever came last, a
        node's clock a little ahead included) is read: TIER up to what it has rolled up, the
        finer tiers after that, the raw tier (and the head) to the end."""
        names = [t for t, _ in TIERS]
        rolled = {
            str(k).removeprefix("rolled."): int(v) * MS
            for k, v in self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'rolled.%'")
        }
        out, lo = [], int(since * MS)
        end = 1 << 62 if until is None else int(until * MS)
        for name in reversed(names[: names.index(tier) + 1]):
            hi = min(rolled.get(name, 0) if name != "raw" else end, end)
            if hi > lo:
                out.append((name, lo, hi))
                lo = hi
        return out or [("raw", lo, max(lo, end))]

    def _column(
        self, key: tuple[int, int, int, int, int], data: bytes | None
    ) -> tuple[list[int], list[int]]:
        """The times and running sums of a column of a block: KEY is (rowid, start, end,
        rows, column), DATA the block (None: cached). Empty for a block that has no such
        column, or is damaged."""
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        found: tuple[list[int], list[int]] = ([], [0])
        try:
            block = Block(data) if data is not None else None
            if block is not None and key[4] < block.width:
                found = (block.times, list(accumulate(block.column(key[4]), initial=0)))
        except BlockError as exc:
            log.warning("history: a damaged block is skipped: %s", exc)
        self._cache[key] = found
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return found

    def _data(self, rowids: list[int]) -> dict[int, bytes]:
        """The blocks ROWIDS, read in a few queries rather than one each."""
        out: dict[int, bytes] = {}
        for i in range(0, len(rowids), 500):
            part = rowids[i : i + 500]
            marks = ", ".join("?" * len(part))
            out.update(
                self._db.execute(f"SELECT rowid, data FROM blocks WHERE rowid IN ({marks})", part)
            )
        return out

    def _grids(
        self, node: int | None, column: int, ranges: list[tuple[str, int, int]], grid: Grid
    ) -> dict[int, Grid]:
        """COLUMN (of today's layout) in buckets like GRID's, per node id (all nodes when NODE
        is None); blocks written before that column was stored have none of it."""
        out: dict[int, Grid] = {}
        for tier, lo, hi in ranges:
            where = "tier = ? AND end >= ? AND start < ?"
            args: tuple[int, ...] = (TIER_ID[tier], lo, hi)
            if node is not None:
                where += " AND node = ?"
                args += (node,)
            found = [
                (rowid, start, end, rows, node, at)
                for rowid, start, end, rows, node, metrics in self._db.execute(
                    f"SELECT rowid, start, end, rows, node, metrics FROM blocks WHERE {where}",
                    args,
                )
                if (at := column_in(column, metrics)) is not None  # a block older than it
            ]
            keys = [(rowid, start, end, rows, at) for rowid, start, end, rows, _, at in found]
            data = self._data([k[0] for k in keys if k not in self._cache])
            for key, (*_, id_, _) in zip(keys, found, strict=True):
                got = self._column(key, data.get(key[0]))
                if not got[0]:
                    continue
                mine = out.get(id_)
                if mine is None:
                    mine = out[id_] = Grid(grid.first, len(grid.sums), grid.step)
                mine.add(got[0], got[1], lo, hi)
        return out

    def _head(self, names: set[str] | None) -> dict[str, Rows]:
        """A copy of the store's head (of NAMES only, if given); call with its lock held."""
        if self.store is None:
            return {}
        head = self.store.head
        chosen = head.keys() if names is None else names & head.keys()
        return {n: list(head[n]) for n in chosen}

    def _snapshot(self, names: set[str] | None) -> dict[str, Rows]:
        """Begin a read transaction and copy the head at one instant: each row is seen once,
        on disk or in the head, never both."""
        lock = self.store.lock if self.store is not None else threading.Lock()
        with lock:
            self._db.execute("BEGIN")
            self._db.execute("SELECT COUNT(*) FROM meta").fetchone()  # the snapshot starts
            return self._head(names)

    @staticmethod
    def _add_head(rows: Rows, column: int, lo: int, hi: int, grid: Grid) -> None:
        """Add COLUMN of a node's head ROWS from LO to HI (ms) to GRID."""
        times = [t for t, _ in rows]
        if times == sorted(times) and all(len(v) > column for _, v in rows):
            values = [v[column] for _, v in rows]  # the usual head: in order, every column
        else:
            have = sorted((t, v[column]) for t, v in rows if len(v) > column)
            times, values = [t for t, _ in have], [v for _, v in have]
        grid.add(times, list(accumulate(values, initial=0)), lo, hi)

    @staticmethod
    def _grid(since: float, now: float, step: float, tier_width: int) -> Grid:
        step_ms = int(max(step, tier_width) * MS)
        first = int(since * MS) // step_ms
        return Grid(first, int(now * MS) // step_ms - first + 1, step_ms)

    def node_series(
        self,
        node: str,
        metrics: list[str],
        since: float,
        step: float,
        now: float,
        until: float | None = None,
    ) -> dict[str, list[Point]]:
        """Each of METRICS for NODE from SINCE to UNTIL (default NOW), averaged over
        STEP-second buckets."""
        end = now if until is None else min(until, now)
        tier, width = self._tier(since, now, step)
        empty = self._grid(since, end, step, width)
        out: dict[str, list[Point]] = {}
        with self._lock:
            head = self._snapshot({node})
            try:
                row = self._db.execute("SELECT id FROM nodes WHERE name = ?", (node,)).fetchone()
                ranges = self._ranges(tier, since, None if until is None else end)
                for metric in metrics:
                    column = column_of(metric)
                    grid = Grid(empty.first, len(empty.sums), empty.step)
                    if row is not None:
                        grid = self._grids(row[0], column, ranges, empty).get(row[0], grid)
                    if node in head:
                        self._add_head(head[node], column, ranges[-1][1], ranges[-1][2], grid)
                    scale = scale_of(column)
                    out[metric] = [
                        (b * grid.step / MS, _round(mean / scale)) for b, mean in grid.means()
                    ]
            finally:
                self._db.rollback()
        return out

    def cluster_series(
        self, metric: str, since: float, step: float, now: float, until: float | None = None
    ) -> list[Point]:
        """METRIC over all nodes from SINCE to UNTIL (default NOW), each node's values
        combined as the registry says (the mean CPU, the total memory, ...)."""
        end = now if until is None else min(until, now)
        tier, width = self._tier(since, now, step)
        empty = self._grid(since, end, step, width)
        column = column_of(metric)
        with self._lock:
            head = self._snapshot(None)
            try:
                ranges = self._ranges(tier, since, None if until is None else end)
                names = {str(n): int(i) for i, n in self._db.execute("SELECT id, name FROM nodes")}
                rolled: Parts = {}
                head_lo, head_hi = ranges[-1][1], ranges[-1][2]
                span = self._rollup_span(tier, column, ranges, empty.step)
                found = None if span is None else self._rolled(column, *span, empty.step)
                if span is not None and found is not None:
                    rolled, (start, stop) = found, span
                    ranges = [("raw", head_lo, start)] if head_lo < start else []
                    ranges += [("raw", stop, head_hi)] if stop < head_hi else []
                per = self._grids(None, column, ranges, empty)
            finally:
                self._db.rollback()
        for name, rows in head.items():
            key = names.get(name, -1 - len(per))
            grid = per.get(key)
            if grid is None:
                grid = per[key] = Grid(empty.first, len(empty.sums), empty.step)
            self._add_head(rows, column, head_lo, head_hi, grid)
        means = _means(rolled, per)
        combine = BY_NAME[metric].cluster
        scale = scale_of(column)
        out = []
        for b in sorted(means):
            values = means[b]
            if combine == "max":
                value = max(values)
            else:
                value = math.fsum(values)
                value = value / len(values) if combine == "mean" else value
            out.append((b * empty.step / MS, _round(value / scale)))
        return out

    def _rollup_span(
        self, tier: str, column: int, ranges: list[tuple[str, int, int]], step: int
    ) -> tuple[int, int] | None:
        """The whole chart buckets (ms, from and to) that the roll-up can answer for a chart
        of RANGES at STEP ms; None when it cannot (another tier, a step it does not divide,
        a store without it)."""
        if not self.rollup or tier != "raw" or len(ranges) != 1 or ranges[0][0] != "raw":
            return None
        if step % ROLLUP_MS or column >= len(SCALES):
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = 'rollup.since'").fetchone()
        if row is None:
            return None
        lo, hi = ranges[0][1], ranges[0][2]
        start = -(-max(lo, int(row[0])) // step) * step
        stop = hi // step * step
        return (start, stop) if start < stop else None

    def _rolled(self, column: int, lo: int, hi: int, step: int) -> Parts | None:
        """COLUMN's roll-up buckets from LO to HI (ms), by STEP-ms chart bucket; None if one
        of them is damaged (the chart then reads the blocks)."""
        out: Parts = defaultdict(list)
        try:
            found = self._db.execute(
                "SELECT bucket, data FROM rollup WHERE bucket >= ? AND bucket < ?",
                (lo // ROLLUP_MS, hi // ROLLUP_MS),
            )
            for bucket, data in found:
                block = SumsBlock(data)
                if column < block.width:
                    part = (block.ids, block.counts, block.column(column))
                    out[bucket * ROLLUP_MS // step].append(part)
        except (BlockError, sqlite3.OperationalError) as exc:
            log.warning("history: the roll-up cannot be read, the blocks are: %s", exc)
            return None
        return out

    def warm(
        self, metrics: Iterable[str] = ("cpuusage", "mem_used"), seconds: float = 3600
    ) -> None:
        """Read METRICS over all nodes for the last SECONDS as the dashboard's cluster charts
        do, once, so their blocks are decoded and cached before the first viewer asks (at
        start, in a thread of its own; a failure only leaves the cache cold)."""
        now = time.time()
        since, step = self.resolve(-seconds, None, now)
        for metric in metrics:
            try:
                self.cluster_series(metric, since, step, now)
            except (sqlite3.Error, OSError, RuntimeError) as exc:
                log.debug("history: the charts could not be read ahead: %s", exc)
                return

    def last_kinds(self) -> dict[str, str]:
        """Each node's latest change (new, up, stale, down, rebooted), for a master that
        starts again: the nodes it knew are not new."""
        with self._lock:
            # SQLite takes the bare column `kind` from the row holding MAX(ts).
            rows = self._db.execute(
                "SELECT node, kind, MAX(ts) FROM changes "
                "WHERE kind IN ('new', 'up', 'stale', 'down', 'rebooted') GROUP BY node"
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def changes(self, limit: int) -> list[Change]:
        """The newest LIMIT changes, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, node, kind, message FROM changes ORDER BY ts DESC LIMIT ?", (limit,)
            ).fetchall()
        return [Change(ts=r[0], node=r[1], kind=r[2], message=r[3]) for r in rows]


def _means(rolled: Parts, grids: dict[int, Grid]) -> dict[int, list[float]]:
    """Each node's mean in each chart bucket, from the roll-up's sums (ROLLED) and GRIDS'
    (by node id), summed per node first when a bucket has both, or several roll-up buckets."""
    extra: dict[int, dict[int, tuple[int, int]]] = defaultdict(dict)
    for key, grid in grids.items():
        first, totals, numbers = grid.first, grid.sums, grid.counts
        for i in range(grid.low, grid.high):
            if numbers[i]:
                extra[first + i][key] = (totals[i], numbers[i])
    out: dict[int, list[float]] = {}
    for b, parts in rolled.items():
        more = extra.pop(b, None)
        if len(parts) == 1 and not more:
            ids, counts, sums = parts[0]
            out[b] = list(map(truediv, sums, counts))
            continue
        acc: dict[int, list[int]] = {}
        for ids, counts, sums in parts:
            for i, n, s in zip(ids, counts, sums, strict=True):
                got = acc.get(i)
                if got is None:
                    acc[i] = [s, n]
                else:
                    got[0] += s
                    got[1] += n
        for key, (s, n) in (more or {}).items():
            got = acc.get(key)
            if got is None:
                acc[key] = [s, n]
            else:
                got[0] += s
                got[1] += n
        out[b] = [s / n for s, n in acc.values()]
    for b, more in extra.items():
        out[b] = [s / n for s, n in more.values()]
    return out


def _round(value: float) -> float:
    return round(value, 4)
