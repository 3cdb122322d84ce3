"""The history store: every metric of every node in SQLite, downsampled so it stays bounded.

Three tiers: `raw` keeps at most one row per node per second for `raw_hours`; `minute` and
`hour` keep averages for `minute_days` and `hour_days`. A year of 1 Hz data from 50 nodes
with the defaults is at most 50 x (24 x 3600 + 30 x 1440 + 365 x 24) = 6.9 million rows;
at about 135 bytes per row on disk (four cores per node, primary key and ts index included)
that is about 0.9 GB.

`History` is used from one thread (`HistoryWriter`'s, off the event loop); `HistoryReader`
has a read connection of its own, which WAL lets run beside the writer. Each opens its
database in `open()`, not in its constructor, and closes it in `close()`.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from bramble.files import private_database
from bramble.master.health import Health
from bramble.master.views import Change, Point
from bramble.telemetry.metrics import BY_NAME, STORED, stored_values
from bramble.telemetry.wire import Sample

log = logging.getLogger(__name__)
Row = tuple[str, float, tuple[float, ...], tuple[float, ...]]
"""One history row: node, its sample's time, the stored metrics' values, per-core usage."""
ROLL_UP_EVERY = 60.0

COLUMNS = tuple(m.name for m in STORED)
"""The history columns: the registry's stored metrics, in its order (the tables' schema)."""
TIERS = (("raw", 1), ("minute", 60), ("hour", 3600))
MAX_POINTS = 2000
_COMBINE = {"sum": "SUM", "mean": "AVG", "max": "MAX"}


def metric_row(sample: Sample, net_rx: float, net_tx: float) -> tuple[float, ...]:
    """The column values of one sample, in COLUMNS order."""
    return stored_values(sample, net_rx, net_tx)


def _schema(tier: str) -> str:
    cols = ", ".join(f"{c} REAL" for c in COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {tier} (node INTEGER NOT NULL, ts INTEGER NOT NULL, "
        f"{cols}, cores TEXT, PRIMARY KEY (node, ts)) WITHOUT ROWID"
    )


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the store's pragmas and schema."""
    private_database(path)
    db = sqlite3.connect(path, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)"
    )
    for tier, _ in TIERS:
        db.execute(_schema(tier))
        db.execute(f"CREATE INDEX IF NOT EXISTS {tier}_ts ON {tier} (ts)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS changes (ts REAL NOT NULL, node TEXT NOT NULL, "
        "kind TEXT NOT NULL, message TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS changes_ts ON changes (ts)")
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL)")
    db.commit()
    return db


class History:
    """Writes samples and changes; rolls raw rows up into minutes and hours; prunes."""

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
        self._db: sqlite3.Connection | None = None
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def open(self) -> History:
        """Open (creating if need be) the database; this store, for chaining."""
        self._db = connect(self.path)
        self._load_ids()
        return self

    def _load_ids(self) -> None:
        self._ids = dict((name, id_) for id_, name in self.db.execute("SELECT id, name FROM nodes"))

    def close(self) -> None:
        """Close the writer connection."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection (RuntimeError before `open`)."""
        if self._db is None:
            raise RuntimeError(f"the history at {self.path} is not open")
        return self._db

    def node_id(self, name: str) -> int:
        """The store's id for node NAME, created on first use."""
        id_ = self._ids.get(name)
        if id_ is None:
            cur = self.db.execute("INSERT OR IGNORE INTO nodes (name) VALUES (?)", (name,))
            if cur.lastrowid and cur.rowcount:
                id_ = int(cur.lastrowid)
            else:
                row = self.db.execute("SELECT id FROM nodes WHERE name = ?", (name,)).fetchone()
                id_ = int(row[0])
            self._ids[name] = id_
        return id_

    def write(
        self,
        rows: Iterable[Row],
        changes: Iterable[Change] = (),
    ) -> int:
        """Store (node, ts, values, cores) rows, one per node per second, and CHANGES."""
        try:
            params = [
                (self.node_id(node), int(ts), *values, ",".join(f"{c:g}" for c in cores))
                for node, ts, values, cores in rows
            ]
        except sqlite3.Error:
            self._undo()
            raise
        marks = ", ".join("?" * (len(COLUMNS) + 3))
        with self._lock:
            try:
                self.db.executemany(f"INSERT OR REPLACE INTO raw VALUES ({marks})", params)
                self.db.executemany(
                    "INSERT INTO changes VALUES (?, ?, ?, ?)",
                    [(c.ts, c.node, c.kind, c.message) for c in changes],
                )
                self.db.commit()
            except sqlite3.Error:
                self._undo()
                raise
        return len(params)

    def _undo(self) -> None:
        """Roll back a failed write: node ids made in it are forgotten with it."""
        try:
            self.db.rollback()
            self._load_ids()
        except sqlite3.Error:
            self._ids = {}

    def roll_up(self, now: float) -> None:
        """Average finished minutes and hours into their tiers, then drop expired rows."""
        avgs = ", ".join(f"AVG({c})" for c in COLUMNS)
        with self._lock:
            for (source, _), (target, width) in itertools.pairwise(TIERS):
                done = self._meta(f"rolled.{target}")
                end = int(now // width) * width
                if end <= done:
                    continue
                start = max(done, end - int(self.keep[source]))
                rows = self.db.execute(
                    f"SELECT node, (ts / {width}) * {width} AS b, {avgs}, "
                    f"GROUP_CONCAT(cores, ';') FROM {source} WHERE ts >= ? AND ts < ? "
                    "GROUP BY node, b",
                    (start, end),
                ).fetchall()
                marks = ", ".join("?" * (len(COLUMNS) + 3))
                self.db.executemany(
                    f"INSERT OR REPLACE INTO {target} VALUES ({marks})",
                    [(*r[:-1], _mean_cores(r[-1])) for r in rows],
                )
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"rolled.{target}", end)
                )
            for tier, _ in TIERS:
                self.db.execute(f"DELETE FROM {tier} WHERE ts < ?", (now - self.keep[tier],))
            self.db.execute("DELETE FROM changes WHERE ts < ?", (now - self.keep["hour"],))
            self._bound()
            self.db.commit()

    def used_bytes(self) -> int:
        """Bytes of the database in use (pages that are not free)."""
        pages, free, size = (
            self.db.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_count", "freelist_count", "page_size")
        )
        return int((pages - free) * size)

    def _bound(self) -> None:
        """Keep the store within max_bytes and max_changes, whatever the time limits allow
        (a flood of node names must not fill the disk): the oldest rows go first, raw before
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
                count = self.db.execute(f"SELECT COUNT(*) FROM {tier}").fetchone()[0]
                if not count:
                    break
                cut = self.db.execute(
                    f"SELECT ts FROM {tier} ORDER BY ts LIMIT 1 OFFSET ?", (count // 10,)
                ).fetchone()[0]
                self.db.execute(f"DELETE FROM {tier} WHERE ts <= ?", (cut,))
        if len(self._ids) > 4096:
            self.db.execute(
                "DELETE FROM nodes WHERE id NOT IN (SELECT DISTINCT node FROM raw) AND id NOT IN "
                "(SELECT DISTINCT node FROM minute) AND id NOT IN (SELECT DISTINCT node FROM hour)"
            )
            self._load_ids()

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0


def _mean_cores(joined: str | None) -> str:
    if not joined:
        return ""
    lists = [[float(x) for x in part.split(",") if x] for part in joined.split(";")]
    width = max((len(x) for x in lists), default=0)
    means = []
    for i in range(width):
        values = [x[i] for x in lists if len(x) > i]
        means.append(sum(values) / len(values))
    return ",".join(f"{m:.3g}" for m in means)


class HistoryReader:
    """Read-only queries, on a connection of their own."""

    def __init__(self, path: Path, keep: dict[str, float]) -> None:
        self.path = path
        self._keep = keep
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

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

    def node_series(
        self, node: str, metrics: list[str], since: float, step: float, now: float
    ) -> dict[str, list[Point]]:
        """Each of METRICS for NODE since SINCE, averaged over STEP-second buckets."""
        tier, width = self._tier(since, now, step)
        step = max(step, width)
        with self._lock:
            row = self._db.execute("SELECT id FROM nodes WHERE name = ?", (node,)).fetchone()
            if row is None:
                return {m: [] for m in metrics}
            plain = [m for m in metrics if m in COLUMNS]
            cores = [m for m in metrics if m.startswith("core.")]
            out: dict[str, list[Point]] = {}
            bucket = f"CAST(ts / {step} AS INTEGER) * {step}"
            if plain:
                cols = ", ".join(f"AVG({m})" for m in plain)
                rows = self._db.execute(
                    f"SELECT {bucket} AS b, {cols} FROM {tier} WHERE node = ? AND ts >= ? "
                    "GROUP BY b ORDER BY b",
                    (row[0], since),
                ).fetchall()
                for i, m in enumerate(plain):
                    out[m] = [(r[0], _round(r[i + 1])) for r in rows if r[i + 1] is not None]
            if cores:
                rows = self._db.execute(
                    f"SELECT {bucket} AS b, GROUP_CONCAT(cores, ';') FROM {tier} "
                    "WHERE node = ? AND ts >= ? GROUP BY b ORDER BY b",
                    (row[0], since),
                ).fetchall()
                for m in cores:
                    index = int(m.split(".", 1)[1])
                    series = []
                    for b, joined in rows:
                        means = _mean_cores(joined).split(",")
                        if index < len(means) and means[index]:
                            series.append((b, float(means[index])))
                    out[m] = series
        return out

    def cluster_series(self, metric: str, since: float, step: float, now: float) -> list[Point]:
        """METRIC over all nodes since SINCE, each node's values combined as the registry says
        (the mean CPU, the total memory, ...)."""
        tier, width = self._tier(since, now, step)
        step = max(step, width)
        combine = _COMBINE[BY_NAME[metric].cluster]
        bucket = f"CAST(ts / {step} AS INTEGER) * {step}"
        with self._lock:
            rows = self._db.execute(
                f"SELECT b, {combine}(v) FROM (SELECT node, {bucket} AS b, AVG({metric}) AS v "
                f"FROM {tier} WHERE ts >= ? GROUP BY node, b) GROUP BY b ORDER BY b",
                (since,),
            ).fetchall()
        return [(b, _round(v)) for b, v in rows if v is not None]

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


class HistoryWriter:
    """Writes HISTORY's batches in a thread of its own, off the event loop, and rolls its
    tiers up once a minute. `put` never blocks: a full queue drops the batch, counted.

    A batch that cannot be written (a full or read-only disk) is reported to HEALTH, which
    says so in /api/health and logs it rarely; the next batch is tried as usual, so history
    resumes by itself when the disk has room again. A store that could not be opened is
    opened again before each batch.
    """

    def __init__(
        self, history: History, *, backlog: int = 600, health: Health | None = None
    ) -> None:
        self.history = history
        self.health = health
        self.queue: queue.Queue[tuple[list[Row], list[Change]] | None] = queue.Queue(backlog)
        self.last_roll = 0.0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="bramble-history", daemon=True)

    def start(self) -> None:
        """Start the writing thread."""
        self._thread.start()

    def put(self, rows: list[Row], changes: list[Change]) -> None:
        """Queue ROWS and CHANGES for writing."""
        if not rows and not changes:
            return
        try:
            self.queue.put_nowait((rows, changes))
        except queue.Full:
            self.dropped += len(rows)
            self._failed(f"the writer is behind: {self.dropped} rows dropped")

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread (waiting at most TIMEOUT seconds)."""
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
        while True:
            item = self.queue.get()
            if item is None:
                break
            try:
                if self.history._db is None:
                    self.history.open()
                self.history.write(*item)
                now = time.time()
                if now - self.last_roll >= ROLL_UP_EVERY:
                    self.last_roll = now
                    self.history.roll_up(now)
            except Exception as exc:
                self._failed(exc)
            else:
                if self.health is not None:
                    self.health.ok("history")


def _round(value: float) -> float:
    return round(value, 4)
