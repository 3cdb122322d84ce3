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
node and hour once that hour is rolled up, hour blocks into one per node and day. Raw blocks
are merged per node and 10 minutes. Each block records how many metric columns it holds (the
`metrics` column; 13 for blocks from before it), so metrics can be added at the end of the
registry's stored ones and old blocks still read, their cores where they were.

Beside the tiers, the *roll-up* the cluster charts read: per ROLLUP_MS bucket, each node's
count and sum of each stored metric, grown by every flush with the rows it writes (late ones
too) and cut with the raw blocks, so it always holds exactly what the raw tier holds from
`rollup.since` on.

`History` is used from one thread (`HistoryWriter`'s, off the event loop) and opens its
database in `open()`, not in its constructor; reads are `history_reader.HistoryReader`'s,
on a connection of their own, beside the writer (WAL).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import struct
import sys
import threading
import time
import zlib
from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate, pairwise
from pathlib import Path

from bramble.files import private_database
from bramble.master.health import Health
from bramble.master.views import Change
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
LEGACY_METRICS = 13
"""The metric columns of a block written before blocks said how many they hold (the
`metrics` column of the blocks table): the first 13 stored metrics, then the cores."""
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
MS = 1000
"""Milliseconds a second: history's times are integer milliseconds."""
ROLLUP_MS = 12_000
"""The width of the roll-up's buckets (ms): the step of the dashboard's 1 h cluster charts
(3600 s in 300 points); a cluster chart whose step is a multiple of it reads the roll-up."""
ROLLUP_VERSION = 1
_BIG = sys.byteorder == "big"


def metric_row(
    sample: Sample, net_rx: float, net_tx: float, rates: Mapping[str, float] | None = None
) -> tuple[float, ...]:
    """The stored metrics of one sample (with the node's RATES), in COLUMNS order."""
    return stored_values(sample, net_rx, net_tx, rates)


def scale_of(column: int) -> int:
    """The scale of block column COLUMN (a metric, or a core past them)."""
    return SCALES[column] if column < len(SCALES) else CORE_SCALE


def column_of(metric: str) -> int:
    """The column of METRIC (`cpuusage`, ..., or `core.N`) in a block of today's layout (and
    in the head)."""
    if metric.startswith("core."):
        return len(COLUMNS) + int(metric[5:])
    return COLUMNS.index(metric)


def column_in(column: int, metrics: int) -> int | None:
    """Where COLUMN (of today's layout) is in a block of METRICS metric columns; None when
    that block has no such metric (it was written before the metric was stored)."""
    if column < len(COLUMNS):
        return column if column < metrics else None
    return metrics + column - len(COLUMNS)


def to_row(
    ts: float, values: Sequence[float], cores: Sequence[float]
) -> tuple[int, tuple[int, ...]]:
    """A sample as stored: milliseconds, and every value at its column's scale."""
    ints = [quantize(v, s) for v, s in zip(values, SCALES, strict=False)]
    ints += [quantize(c, CORE_SCALE) for c in cores]
    return round(ts * MS), tuple(ints)


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


Sums = dict[int, dict[int, list[int]]]
"""Roll-up sums: by bucket (time over ROLLUP_MS), by node id, the rows' count then the sum of
each stored metric."""


def rollup_sums(rows: Rows, width: int) -> tuple[dict[int, list[int]], list[int]]:
    """ROWS' count and sums of their first WIDTH columns per roll-up bucket; and the times of
    rows narrower than WIDTH (left out)."""
    groups: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    narrow = []
    for t, values in rows:
        if len(values) < width:
            narrow.append(t)
        else:
            groups[t // ROLLUP_MS].append(values)
    out = {}
    for bucket, group in groups.items():
        out[bucket] = [len(group), *(sum(c) for c in zip(*group, strict=False))][: width + 1]
    return out, narrow


_WIDTHS = (("b", 1), ("h", 2), ("i", 4), ("q", 8))
_CODES = {w: c for c, w in _WIDTHS}
_HEAD = struct.Struct("<BII")
"""A roll-up bucket's header: version, nodes, sums a node."""


def _pack(values: Sequence[int]) -> tuple[int, bytes]:
    """VALUES as an array of the narrowest of 1, 2, 4 or 8 bytes that holds them, deflated:
    its width and bytes. OverflowError beyond 64 bits."""
    low, high = (min(values), max(values)) if values else (0, 0)
    fits = [(c, w) for c, w in _WIDTHS if -(1 << (8 * w - 1)) <= low and high < 1 << (8 * w - 1)]
    if not fits:
        raise OverflowError(f"a sum beyond 64 bits: {low} .. {high}")
    code, width = fits[0]
    packed = array(code, values)
    if _BIG:
        packed.byteswap()
    return width, zlib.compress(packed.tobytes(), 1, wbits=-15)


def encode_sums(per: dict[int, list[int]], width: int) -> bytes:
    """One roll-up bucket: each node's count and sums (PER, by node id; WIDTH sums each).
    A header (version, nodes, sums a node: `_HEAD`), then for each column (node ids,
    counts, each metric's sums) its size (4 bytes, little-endian) and its width (1 byte), then
    the columns: each an array of the narrowest integers that hold it, deflated on its own, so
    a chart inflates only what it reads. OverflowError for a sum beyond 64 bits."""
    ids = sorted(per)
    packed = [_pack(ids)] + [_pack([per[i][k] for i in ids]) for k in range(width + 1)]
    sizes = array("I", [len(body) for _, body in packed])
    if _BIG:
        sizes.byteswap()
    out = bytearray(_HEAD.pack(ROLLUP_VERSION, len(ids), width))
    out += sizes.tobytes() + bytes(w for w, _ in packed)
    for _, body in packed:
        out += body
    return bytes(out)


class SumsBlock:
    """A roll-up bucket as `encode_sums` wrote it: its node ids, counts, and each column's
    sums on demand."""

    __slots__ = ("_data", "_offsets", "_widths", "count", "counts", "ids", "width")

    def __init__(self, data: bytes) -> None:
        if not data or data[0] != ROLLUP_VERSION:
            raise BlockError(f"roll-up version {data[:1].hex()}, this bramble reads 1")
        if len(data) < _HEAD.size:
            raise BlockError("truncated roll-up")
        _, self.count, self.width = _HEAD.unpack_from(data)
        columns = self.width + 2
        start = _HEAD.size + 5 * columns
        if len(data) < start:
            raise BlockError("truncated roll-up")
        sizes = array("I")
        sizes.frombytes(data[_HEAD.size : _HEAD.size + 4 * columns])
        if _BIG:
            sizes.byteswap()
        self._widths = data[start - columns : start]
        self._offsets = list(accumulate(sizes, initial=start))
        if self._offsets[-1] != len(data):
            raise BlockError("roll-up of the wrong size")
        self._data = data
        self.ids = self._column(0)
        self.counts = self._column(1)

    def _column(self, index: int) -> array[int]:
        width = self._widths[index]
        code = _CODES.get(width)
        try:
            raw = zlib.decompress(
                self._data[self._offsets[index] : self._offsets[index + 1]], wbits=-15
            )
        except zlib.error as exc:
            raise BlockError(f"damaged roll-up: {exc}") from None
        if code is None or len(raw) != width * self.count:
            raise BlockError(f"bad roll-up column (width {width}, {len(raw)} bytes)")
        out = array(code)
        out.frombytes(raw)
        if _BIG:
            out.byteswap()
        return out

    def column(self, k: int) -> array[int]:
        """The sums of column K (a stored metric), one per node."""
        if not 0 <= k < self.width:
            raise IndexError(f"column {k} of a roll-up of {self.width}")
        return self._column(2 + k)

    def sums(self) -> dict[int, list[int]]:
        """Count and sums per node id, as `encode_sums` was given them."""
        columns = [self.counts, *(self.column(k) for k in range(self.width))]
        return {i: [c[j] for c in columns] for j, i in enumerate(self.ids)}


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
    have = [r[1] for r in db.execute("PRAGMA table_info(blocks)")]
    if "metrics" not in have:  # a store from before: its blocks hold the first 13 metrics
        db.execute(
            f"ALTER TABLE blocks ADD COLUMN metrics INTEGER NOT NULL DEFAULT {LEGACY_METRICS}"
        )
    db.commit()
    return db


INSERT = (
    "INSERT INTO blocks (tier, node, start, end, rows, data, metrics) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
"""A block: tier, node id, start and end (ms), rows, data, and how many metric columns."""


def create_rollup(db: sqlite3.Connection) -> None:
    """The roll-up table, if the store has none yet (a new store, or one from before it):
    it then holds the rows flushed from now on, so it is complete only from the bucket after
    the last row already written (`rollup.since`, ms)."""
    found = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rollup'").fetchone()
    if found is not None:
        return
    last = db.execute("SELECT MAX(end) FROM blocks WHERE tier = 0").fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "raw" in tables:  # the rows of the old layout, converted into blocks after this
        old = db.execute("SELECT MAX(ts) FROM raw").fetchone()[0]
        if old is not None:
            last = max(last or 0, round(float(old) * MS))
    since = 0 if last is None else (int(last) // ROLLUP_MS + 1) * ROLLUP_MS
    db.execute("CREATE TABLE rollup (bucket INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('rollup.since', ?)", (since,))
    db.commit()


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
        create_rollup(self._db)
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
                db.executemany(INSERT, [(0, id_, *b, len(COLUMNS)) for b in encoded])
            self._add_rollup({self.node_id(n): rows for n, rows in head.items() if rows})
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

    def _add_rollup(self, head: dict[int, Rows]) -> None:
        """Add HEAD's rows (by node id) to the roll-up's buckets, inside the flush's
        transaction: a bucket's sums grow with every row written into its time, late ones
        too, so the roll-up always holds what the raw blocks hold from `rollup.since` on."""
        width = len(SCALES)
        added: Sums = defaultdict(dict)
        since = self._meta("rollup.since")
        for id_, rows in head.items():
            sums, narrow = rollup_sums(rows, width)
            for bucket, got in sums.items():
                added[bucket][id_] = got
            if narrow:  # rows without every metric: the roll-up starts after them
                since = max(since, (max(narrow) // ROLLUP_MS + 1) * ROLLUP_MS)
        wanted = [b for b in added if b * ROLLUP_MS >= since]
        old: dict[int, bytes] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            marks = ", ".join("?" * len(part))
            old.update(
                self.db.execute(f"SELECT bucket, data FROM rollup WHERE bucket IN ({marks})", part)
            )
        out = []
        for bucket in wanted:
            per = added[bucket]
            data = old.get(bucket)
            if data is not None:
                try:
                    before = SumsBlock(data)
                    if before.width != width:
                        raise BlockError(f"a roll-up of {before.width} metrics, not {width}")
                except BlockError:  # damaged, or older: the roll-up starts after it
                    since = max(since, (bucket + 1) * ROLLUP_MS)
                    continue
                for id_, got in before.sums().items():
                    mine = per.get(id_)
                    per[id_] = (
                        got if mine is None else [a + b for a, b in zip(got, mine, strict=True)]
                    )
            try:
                out.append((bucket, encode_sums(per, width)))
            except OverflowError:  # a sum beyond 64 bits: the roll-up starts after it
                since = max(since, (bucket + 1) * ROLLUP_MS)
        self.db.executemany("INSERT OR REPLACE INTO rollup VALUES (?, ?)", out)
        self._rollup_since(since)

    def _rollup_since(self, since: int) -> None:
        """The roll-up holds every raw row from SINCE (ms) on: what is before goes."""
        if since > self._meta("rollup.since"):
            self._set_meta("rollup.since", since)
        self.db.execute("DELETE FROM rollup WHERE bucket < ?", (since // ROLLUP_MS,))

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
            for (id_, metrics), rows in self._read(source, start * MS, cut * MS).items():
                averaged = average(rows, width * MS)
                rolled += [(TIER_ID[target], id_, *b, metrics) for b in encode_rows(averaged)]
            self.db.executemany(INSERT, rolled)
            self._set_meta(f"rolled.{target}", cut)
            if source in MERGE:
                self._merge(source, done, cut)
        if "hour" in MERGE:
            self._merge("hour", self._meta("merged.hour"), end // MERGE["hour"] * MERGE["hour"])
        for tier, _ in TIERS:
            self.db.execute(
                "DELETE FROM blocks WHERE tier = ? AND end < ?",
                (TIER_ID[tier], (now - self.keep[tier]) * MS),
            )
        self._rollup_since(-(-int((now - self.keep["raw"]) * MS) // ROLLUP_MS) * ROLLUP_MS)
        self.db.execute("DELETE FROM changes WHERE ts < ?", (now - self.keep["hour"],))
        self._bound()

    def _merge(self, tier: str, done: int, cut: int) -> None:
        """Merge TIER's blocks per node (and layout) in each finished MERGE[tier] window up
        to CUT."""
        window = MERGE[tier]
        first = max(done // window * window, cut - int(self.keep[tier]) // window * window)
        for lo in range(first, cut - window + 1, window):
            found = self.db.execute(
                "SELECT rowid, node, metrics, data FROM blocks WHERE tier = ? AND end >= ? "
                "AND end < ? AND start >= ? ORDER BY node",
                (TIER_ID[tier], lo * MS, (lo + window) * MS, lo * MS),
            ).fetchall()
            per: dict[tuple[int, int], list[tuple[int, bytes]]] = defaultdict(list)
            for rowid, node, metrics, data in found:
                per[node, metrics].append((rowid, data))
            for (node, metrics), parts in per.items():
                if len(parts) < 2:
                    continue
                rows = [r for _, data in parts for r in _safe_rows(data)]
                self.db.executemany("DELETE FROM blocks WHERE rowid = ?", [(r,) for r, _ in parts])
                self.db.executemany(
                    INSERT, [(TIER_ID[tier], node, *b, metrics) for b in encode_rows(rows)]
                )
        self._set_meta(f"merged.{tier}", cut)

    def _read(self, tier: str, lo: int, hi: int) -> dict[tuple[int, int], Rows]:
        """TIER's rows from LO to HI (ms), by node id and layout (metric columns)."""
        out: dict[tuple[int, int], Rows] = defaultdict(list)
        for node, metrics, data in self.db.execute(
            "SELECT node, metrics, data FROM blocks WHERE tier = ? AND end >= ? AND start < ?",
            (TIER_ID[tier], lo, hi),
        ):
            out[node, metrics] += [r for r in _safe_rows(data) if lo <= r[0] < hi]
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
                gone = self.db.execute(
                    "SELECT MAX(end) FROM (SELECT end FROM blocks WHERE tier = ? "
                    "ORDER BY end LIMIT ?)",
                    (TIER_ID[tier], max(1, count // 10)),
                ).fetchone()[0]
                self.db.execute(
                    "DELETE FROM blocks WHERE rowid IN (SELECT rowid FROM blocks WHERE tier = ? "
                    "ORDER BY end LIMIT ?)",
                    (TIER_ID[tier], max(1, count // 10)),
                )
                if tier == "raw":  # the roll-up of what went goes too
                    self._rollup_since((int(gone) // ROLLUP_MS + 1) * ROLLUP_MS)
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
