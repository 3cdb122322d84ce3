"""The history store: every sample of every node, kept in memory for a while, then written
to SQLite as compressed blocks (`bramble.tsdb.codec`), so an SD card sees few writes.

Samples accepted by the collector go to the *head*, in memory, one row per sample (its time
in milliseconds, the stored metrics and per-core usage as integers at each metric's scale).
Every `flush_seconds` the head is written as one block per node, in one SQLite transaction
(WAL) that also rolls finished minutes and hours up into their tiers, drops what has expired
and keeps the store within `max_bytes`. A kill -9 or a power cut loses at most the head,
never the database; a clean stop flushes it.

Three tiers, each a set of blocks: `raw` keeps every sample for `raw_hours`, `minute` and
`hour` keep averages for `minute_days` and `hour_days`. Minute blocks are merged into one per
node and hour once that hour is rolled up, hour blocks into one per node and day.

`History` is used from one thread (`HistoryWriter`'s, off the event loop); `HistoryReader`
reads on a connection of its own, beside the writer (WAL), and sees the head through the
store it is given. Each opens its database in `open()`, not in its constructor.
"""

from __future__ import annotations

import logging
import math
import queue
import sqlite3
import threading
import time
from bisect import bisect_left
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from itertools import accumulate, pairwise
from pathlib import Path

from bramble.files import private_database
from bramble.master.health import Health
from bramble.master.views import Change, Point
from bramble.telemetry.metrics import BY_NAME, STORED, stored_values
from bramble.telemetry.wire import Sample
from bramble.tsdb.codec import Block, BlockError, encode_block, quantize

log = logging.getLogger(__name__)
Row = tuple[str, float, tuple[float, ...], tuple[float, ...]]
"""One sample for history: node, its time (epoch seconds), the stored metrics' values,
per-core usage."""
Rows = list[tuple[int, tuple[int, ...]]]
"""A node's rows as stored: time in ms, then the columns as scaled integers."""

COLUMNS = tuple(m.name for m in STORED)
"""The block columns: the registry's stored metrics in its order, then one per core."""
SCALES = tuple(m.scale for m in STORED)
CORE_SCALE = BY_NAME["cpuusage"].scale
TIERS = (("raw", 1), ("minute", 60), ("hour", 3600))
TIER_ID = {name: i for i, (name, _) in enumerate(TIERS)}
MERGE = {"raw": 600, "minute": 3600, "hour": 86400}
"""A tier's blocks are merged into one per node over this many seconds, once rolled up."""
GRACE = 5.0
"""Seconds a late datagram has before its minute is rolled up."""
MAX_POINTS = 2000
MAX_BLOCK_ROWS = 4096
MAX_HEAD = 2_000_000
"""Rows the head holds at most (a disk that fails for long): past it new rows are dropped."""
_MS = 1000


def metric_row(sample: Sample, net_rx: float, net_tx: float) -> tuple[float, ...]:
    """The stored metrics of one sample, in COLUMNS order."""
    return stored_values(sample, net_rx, net_tx)


def scale_of(column: int) -> int:
    """The scale of block column COLUMN (a metric, or a core past them)."""
    return SCALES[column] if column < len(SCALES) else CORE_SCALE


def _column(metric: str) -> int:
    """The block column of METRIC (`cpuusage`, ..., or `core.N`)."""
    if metric.startswith("core."):
        return len(COLUMNS) + int(metric[5:])
    return COLUMNS.index(metric)


def to_row(
    ts: float, values: Sequence[float], cores: Sequence[float]
) -> tuple[int, tuple[int, ...]]:
    """A sample as stored: milliseconds, and every value at its column's scale."""
    ints = [quantize(v, s) for v, s in zip(values, SCALES, strict=False)]
    ints += [quantize(c, CORE_SCALE) for c in cores]
    return round(ts * _MS), tuple(ints)


def encode_rows(rows: Rows) -> list[tuple[int, int, int, bytes]]:
    """ROWS (any order) as blocks: (start, end, rows, data) each; a new block wherever the
    number of columns changes (a core went offline) or MAX_BLOCK_ROWS is reached."""
    rows = sorted(rows, key=lambda r: r[0])
    out = []
    i = 0
    while i < len(rows):
        width = len(rows[i][1])
        j = i + 1
        while j < len(rows) and j - i < MAX_BLOCK_ROWS and len(rows[j][1]) == width:
            j += 1
        part = rows[i:j]
        times = [t for t, _ in part]
        columns = [list(c) for c in zip(*(v for _, v in part), strict=True)] if width else []
        out.append((times[0], times[-1], len(part), encode_block(times, columns)))
        i = j
    return out


def decode_rows(data: bytes) -> Rows:
    """A block's rows."""
    block = Block(data)
    columns = block.columns()
    return (
        list(zip(block.times, zip(*columns, strict=True), strict=True))
        if columns
        else [(t, ()) for t in block.times]
    )


def average(rows: Rows, width_ms: int) -> Rows:
    """ROWS averaged over WIDTH_MS buckets (a column missing from some rows averages over
    those that have it), each stamped with its bucket's start."""
    buckets: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for t, values in rows:
        buckets[t // width_ms * width_ms].append(values)
    out = []
    for start in sorted(buckets):
        group = buckets[start]
        width = max(len(v) for v in group)
        means = []
        for k in range(width):
            have = [v[k] for v in group if len(v) > k]
            means.append(round(sum(have) / len(have)))
        out.append((start, tuple(means)))
    return out


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the store's pragmas and schema."""
    private_database(path)
    db = sqlite3.connect(path, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
        CREATE TABLE IF NOT EXISTS blocks (tier INTEGER NOT NULL, node INTEGER NOT NULL,
            start INTEGER NOT NULL, end INTEGER NOT NULL, rows INTEGER NOT NULL,
            data BLOB NOT NULL);
        CREATE INDEX IF NOT EXISTS blocks_node ON blocks (tier, node, end);
        CREATE INDEX IF NOT EXISTS blocks_end ON blocks (tier, end);
        CREATE TABLE IF NOT EXISTS changes (ts REAL NOT NULL, node TEXT NOT NULL,
            kind TEXT NOT NULL, message TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS changes_ts ON changes (ts);
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
        """
    )
    db.commit()
    return db


class History:
    """The store: the head in memory, blocks on disk; flushes, rolls up, prunes, bounds."""

    def __init__(
        self,
        path: Path,
        *,
        raw_hours: float = 24,
        minute_days: float = 30,
        hour_days: float = 365,
        max_bytes: int = 2 << 30,
        max_changes: int = 100_000,
    ) -> None:
        self.path = path
        self.keep = {
            "raw": raw_hours * 3600,
            "minute": minute_days * 86400,
            "hour": hour_days * 86400,
        }
        self.max_bytes = max_bytes
        self.max_changes = max_changes
        self.lock = threading.Lock()
        """Held while a flush commits and leaves the head: a reader holding it sees every
        row once, in the head or on disk."""
        self.head: dict[str, Rows] = defaultdict(list)
        self.head_rows = 0
        self.dropped = 0
        self.flushed: float | None = None
        """When the head was last written (epoch seconds), None before the first time."""
        self._changes: list[Change] = []
        self._db: sqlite3.Connection | None = None
        self._ids: dict[str, int] = {}

    def open(self) -> History:
        """Open (creating if need be) the database; this store, for chaining."""
        self._db = connect(self.path)
        self._load_ids()
        return self

    def _load_ids(self) -> None:
        self._ids = dict((name, id_) for id_, name in self.db.execute("SELECT id, name FROM nodes"))

    def close(self) -> None:
        """Write the head, then close the connection."""
        if self._db is None:
            return
        try:
            self.flush(time.time())
        except sqlite3.Error as exc:
            log.warning("history: the last %d rows could not be written: %s", self.head_rows, exc)
        self._db.close()
        self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection (RuntimeError before `open`)."""
        if self._db is None:
            raise RuntimeError(f"the history at {self.path} is not open")
        return self._db

    def node_id(self, name: str) -> int:
        """The store's id for node NAME, created on first use (inside the caller's
        transaction)."""
        id_ = self._ids.get(name)
        if id_ is None:
            self.db.execute("INSERT OR IGNORE INTO nodes (name) VALUES (?)", (name,))
            row = self.db.execute("SELECT id FROM nodes WHERE name = ?", (name,)).fetchone()
            id_ = int(row[0])
            self._ids[name] = id_
        return id_

    def write(self, rows: Iterable[Row], changes: Iterable[Change] = ()) -> int:
        """Keep (node, ts, values, cores) ROWS and CHANGES in the head, for the next flush."""
        kept = 0
        with self.lock:
            for node, ts, values, cores in rows:
                if self.head_rows >= MAX_HEAD:
                    self.dropped += 1
                    continue
                self.head[node].append(to_row(ts, values, cores))
                self.head_rows += 1
                kept += 1
            self._changes.extend(changes)
        return kept

    def flush(self, now: float) -> int:
        """Write the head as blocks, roll up, prune and bound, in one transaction; rows
        written. On an error the head is kept for the next try."""
        with self.lock:
            head = {node: list(rows) for node, rows in self.head.items()}
            changes = list(self._changes)
        blocks = [(node, encode_rows(rows)) for node, rows in head.items() if rows]
        db = self.db
        try:
            for node, encoded in blocks:
                id_ = self.node_id(node)
                db.executemany(
                    "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
                    [(0, id_, *b) for b in encoded],
                )
            db.executemany(
                "INSERT INTO changes VALUES (?, ?, ?, ?)",
                [(c.ts, c.node, c.kind, c.message) for c in changes],
            )
            self._roll_up(now)
            with self.lock:
                db.commit()
                for node, rows in head.items():  # rows that came in meanwhile stay
                    del self.head[node][: len(rows)]
                    if not self.head[node]:
                        del self.head[node]
                self.head_rows = sum(len(r) for r in self.head.values())
                del self._changes[: len(changes)]
                self.flushed = now
        except sqlite3.Error:
            self._undo()
            raise
        return sum(len(r) for r in head.values())

    def _undo(self) -> None:
        """Roll back a failed flush: node ids made in it are forgotten with it."""
        try:
            self.db.rollback()
            self._load_ids()
        except sqlite3.Error:
            self._ids = {}

    def roll_up(self, now: float) -> None:
        """Flush, rolling finished minutes and hours up (the writer's flush does it anyway)."""
        self.flush(now)

    def _roll_up(self, now: float) -> None:
        """Average finished minutes and hours into their tiers, merge their blocks, drop what
        has expired and keep within bounds; inside the flush's transaction."""
        end = int((now - GRACE) // 60 * 60)
        for (source, _), (target, width) in pairwise(TIERS):
            done = self._meta(f"rolled.{target}")
            cut = end // width * width
            if cut <= done:
                continue
            start = max(done, cut - int(self.keep[source]))
            rolled = []
            for id_, rows in self._read(source, start * _MS, cut * _MS).items():
                averaged = average(rows, width * _MS)
                rolled += [(TIER_ID[target], id_, *b) for b in encode_rows(averaged)]
            self.db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)", rolled)
            self._set_meta(f"rolled.{target}", cut)
            if source in MERGE:
                self._merge(source, done, cut)
        if "hour" in MERGE:
            self._merge("hour", self._meta("merged.hour"), end // MERGE["hour"] * MERGE["hour"])
        for tier, _ in TIERS:
            self.db.execute(
                "DELETE FROM blocks WHERE tier = ? AND end < ?",
                (TIER_ID[tier], (now - self.keep[tier]) * _MS),
            )
        self.db.execute("DELETE FROM changes WHERE ts < ?", (now - self.keep["hour"],))
        self._bound()

    def _merge(self, tier: str, done: int, cut: int) -> None:
        """Merge TIER's blocks per node in each finished MERGE[tier] window up to CUT."""
        window = MERGE[tier]
        first = max(done // window * window, cut - int(self.keep[tier]) // window * window)
        for lo in range(first, cut - window + 1, window):
            found = self.db.execute(
                "SELECT rowid, node, data FROM blocks WHERE tier = ? AND end >= ? AND end < ? "
                "AND start >= ? ORDER BY node",
                (TIER_ID[tier], lo * _MS, (lo + window) * _MS, lo * _MS),
            ).fetchall()
            per: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
            for rowid, node, data in found:
                per[node].append((rowid, data))
            for node, parts in per.items():
                if len(parts) < 2:
                    continue
                rows = [r for _, data in parts for r in _safe_rows(data)]
                self.db.executemany("DELETE FROM blocks WHERE rowid = ?", [(r,) for r, _ in parts])
                self.db.executemany(
                    "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
                    [(TIER_ID[tier], node, *b) for b in encode_rows(rows)],
                )
        self._set_meta(f"merged.{tier}", cut)

    def _read(self, tier: str, lo: int, hi: int) -> dict[int, Rows]:
        """TIER's rows from LO to HI (ms), by node id."""
        out: dict[int, Rows] = defaultdict(list)
        for node, data in self.db.execute(
            "SELECT node, data FROM blocks WHERE tier = ? AND end >= ? AND start < ?",
            (TIER_ID[tier], lo, hi),
        ):
            out[node] += [r for r in _safe_rows(data) if lo <= r[0] < hi]
        return out

    def used_bytes(self) -> int:
        """Bytes of the database in use (pages that are not free)."""
        pages, free, size = (
            self.db.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_count", "freelist_count", "page_size")
        )
        return int((pages - free) * size)

    def _bound(self) -> None:
        """Keep the store within max_bytes and max_changes, whatever the time limits allow
        (a flood of node names must not fill the disk): the oldest blocks go first, raw before
        minutes before hours, and names nothing refers to any more."""
        changes = self.db.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
        if changes > self.max_changes:
            self.db.execute(
                "DELETE FROM changes WHERE ts <= (SELECT ts FROM changes ORDER BY ts DESC "
                "LIMIT 1 OFFSET ?)",
                (self.max_changes,),
            )
        for tier, _ in TIERS:
            while self.used_bytes() > self.max_bytes:
                count = self.db.execute(
                    "SELECT COUNT(*) FROM blocks WHERE tier = ?", (TIER_ID[tier],)
                ).fetchone()[0]
                if not count:
                    break
                self.db.execute(
                    "DELETE FROM blocks WHERE rowid IN (SELECT rowid FROM blocks WHERE tier = ? "
                    "ORDER BY end LIMIT ?)",
                    (TIER_ID[tier], max(1, count // 10)),
                )
        if len(self._ids) > 4096:
            self.db.execute("DELETE FROM nodes WHERE id NOT IN (SELECT DISTINCT node FROM blocks)")
            self._load_ids()

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def _safe_rows(data: bytes) -> Rows:
    """A block's rows; none, logged, for a damaged block (the rest of history still reads)."""
    try:
        return decode_rows(data)
    except BlockError as exc:
        log.warning("history: a damaged block is skipped: %s", exc)
        return []


class Grid:
    """Sums and counts of one series' values in STEP-ms buckets, from bucket FIRST on
    (a bucket's number is its start over STEP); grown when values come later."""

    __slots__ = ("counts", "first", "step", "sums")

    def __init__(self, first: int, size: int, step: int) -> None:
        self.first, self.step = first, step
        self.sums = [0] * size
        self.counts = [0] * size

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


class HistoryReader:
    """Read-only queries on a connection of their own, merging the blocks on disk with the
    head of STORE (the writer's `History`) when given. Decoded columns are cached (blocks
    never change; a merged block is a new one)."""

    def __init__(
        self,
        path: Path,
        keep: dict[str, float],
        store: History | None = None,
        *,
        cache: int = 20_000,
    ) -> None:
        self.path = path
        self._keep = keep
        self.store = store
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
    def resolve(since: float | None, step: float | None, now: float) -> tuple[float, float]:
        """Absolute SINCE (negative means seconds ago; default 15 min) and a sane STEP."""
        start = now - 900 if since is None else (now + since if since <= 0 else since)
        span = max(1.0, now - start)
        least = span / MAX_POINTS
        chosen = max(step or 0.0, least, 1.0)
        if step is None:
            chosen = max(chosen, span / 300)
        return start, float(math.ceil(chosen))

    def _ranges(self, tier: str, since: float) -> list[tuple[str, int, int]]:
        """Where each part of the time from SINCE is read: TIER up to what it has rolled up,
        the finer tiers after that, the raw tier (and the head) to the end."""
        names = [t for t, _ in TIERS]
        rolled = {
            str(k).removeprefix("rolled."): int(v) * _MS
            for k, v in self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'rolled.%'")
        }
        out, lo = [], int(since * _MS)
        for name in reversed(names[: names.index(tier) + 1]):
            hi = rolled.get(name, 0) if name != "raw" else 1 << 62
            if hi > lo:
                out.append((name, lo, hi))
                lo = hi
        return out

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
        """COLUMN in buckets like GRID's, per node id (all nodes when NODE is None)."""
        out: dict[int, Grid] = {}
        for tier, lo, hi in ranges:
            where = "tier = ? AND end >= ? AND start < ?"
            args: tuple[int, ...] = (TIER_ID[tier], lo, hi)
            if node is not None:
                where += " AND node = ?"
                args += (node,)
            found = self._db.execute(
                f"SELECT rowid, start, end, rows, node FROM blocks WHERE {where}", args
            ).fetchall()
            keys = [(rowid, start, end, rows, column) for rowid, start, end, rows, _ in found]
            data = self._data([k[0] for k in keys if k not in self._cache])
            for key, (*_, id_) in zip(keys, found, strict=True):
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
    def _add_head(rows: Rows, column: int, lo: int, grid: Grid) -> None:
        have = sorted((t, v[column]) for t, v in rows if t >= lo and len(v) > column)
        prefix = list(accumulate((v for _, v in have), initial=0))
        grid.add([t for t, _ in have], prefix, lo, 1 << 62)

    @staticmethod
    def _grid(since: float, now: float, step: float, tier_width: int) -> Grid:
        step_ms = int(max(step, tier_width) * _MS)
        first = int(since * _MS) // step_ms
        return Grid(first, int(now * _MS) // step_ms - first + 1, step_ms)

    def node_series(
        self, node: str, metrics: list[str], since: float, step: float, now: float
    ) -> dict[str, list[Point]]:
        """Each of METRICS for NODE since SINCE, averaged over STEP-second buckets."""
        tier, width = self._tier(since, now, step)
        empty = self._grid(since, now, step, width)
        out: dict[str, list[Point]] = {}
        with self._lock:
            head = self._snapshot({node})
            try:
                row = self._db.execute("SELECT id FROM nodes WHERE name = ?", (node,)).fetchone()
                ranges = self._ranges(tier, since)
                for metric in metrics:
                    column = _column(metric)
                    grid = Grid(empty.first, len(empty.sums), empty.step)
                    if row is not None:
                        grid = self._grids(row[0], column, ranges, empty).get(row[0], grid)
                    if node in head:
                        self._add_head(head[node], column, ranges[-1][1], grid)
                    scale = scale_of(column)
                    out[metric] = [
                        (b * grid.step / _MS, _round(mean / scale)) for b, mean in grid.means()
                    ]
            finally:
                self._db.rollback()
        return out

    def cluster_series(self, metric: str, since: float, step: float, now: float) -> list[Point]:
        """METRIC over all nodes since SINCE, each node's values combined as the registry says
        (the mean CPU, the total memory, ...)."""
        tier, width = self._tier(since, now, step)
        empty = self._grid(since, now, step, width)
        column = _column(metric)
        with self._lock:
            head = self._snapshot(None)
            try:
                ranges = self._ranges(tier, since)
                names = {str(n): int(i) for i, n in self._db.execute("SELECT id, name FROM nodes")}
                per = self._grids(None, column, ranges, empty)
            finally:
                self._db.rollback()
        for name, rows in head.items():
            key = names.get(name, -1 - len(per))
            grid = per.get(key)
            if grid is None:
                grid = per[key] = Grid(empty.first, len(empty.sums), empty.step)
            self._add_head(rows, column, ranges[-1][1], grid)
        combine = BY_NAME[metric].cluster
        buckets: dict[int, list[float]] = defaultdict(list)
        for grid in per.values():
            for b, mean in grid.means():
                buckets[b].append(mean)
        scale = scale_of(column)
        out = []
        for b in sorted(buckets):
            means = buckets[b]
            value = sum(means) if combine == "sum" else max(means)
            if combine == "mean":
                value = sum(means) / len(means)
            out.append((b * empty.step / _MS, _round(value / scale)))
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
                "SELECT node, kind, MAX(ts) FROM changes GROUP BY node"
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def changes(self, limit: int) -> list[Change]:
        """The newest LIMIT changes, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, node, kind, message FROM changes ORDER BY ts DESC LIMIT ?", (limit,)
            ).fetchall()
        return [Change(ts=r[0], node=r[1], kind=r[2], message=r[3]) for r in rows]


class HistoryWriter:
    """Takes the live view's rows into HISTORY's head and flushes it every FLUSH_SECONDS, in
    a thread of its own, off the event loop. `put` never blocks: a full queue drops the
    batch, counted.

    A flush that fails (a full or read-only disk) is reported to HEALTH, which says so in
    /api/health and logs it rarely; the head is kept and tried again at the next flush, so
    history resumes by itself when the disk has room again. A store that could not be opened
    is opened again before each flush. `close` flushes everything.
    """

    def __init__(
        self,
        history: History,
        *,
        flush_seconds: float = 60.0,
        backlog: int = 600,
        health: Health | None = None,
    ) -> None:
        self.history = history
        self.flush_seconds = flush_seconds
        self.health = health
        self.queue: queue.Queue[tuple[list[Row], list[Change]] | None] = queue.Queue(backlog)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="bramble-history", daemon=True)
        if health is not None:
            health.history_flush_seconds = flush_seconds
            health.history_max_bytes = history.max_bytes

    def start(self) -> None:
        """Start the writing thread."""
        self._thread.start()

    def put(self, rows: list[Row], changes: list[Change]) -> None:
        """Queue ROWS and CHANGES for the head."""
        if not rows and not changes:
            return
        try:
            self.queue.put_nowait((rows, changes))
        except queue.Full:
            self.dropped += len(rows)
            self._failed(f"the writer is behind: {self.dropped} rows dropped")

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and in the head, then stop the thread (waiting at most
        TIMEOUT seconds)."""
        if not self._thread.is_alive():
            return
        self.queue.put(None)
        self._thread.join(timeout)

    def _failed(self, error: BaseException | str) -> None:
        if self.health is not None:
            self.health.failed("history", error, self.history.path)
        else:
            log.warning("history: %s", error)

    def _run(self) -> None:
        due = time.monotonic() + self.flush_seconds
        while True:
            try:
                item = self.queue.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:
                pass
            else:
                if item is None:
                    self._flush()
                    break
                self.history.write(*item)
            if time.monotonic() >= due:
                due = time.monotonic() + self.flush_seconds
                self._flush()

    def _flush(self) -> None:
        try:
            if self.history._db is None:
                self.history.open()
            self.history.flush(time.time())
        except Exception as exc:
            self._failed(exc)
        else:
            if self.health is not None:
                self.health.ok("history")
                self.health.history_flushed = self.history.flushed
                self.health.history_bytes = self.history.used_bytes()
                self.health.history_max_bytes = self.history.max_bytes


def _round(value: float) -> float:
    return round(value, 4)
