"""SQLite records of jobs (with their captured output) and of every `exec`.

One connection per call keeps the store safe to use from the runner's reader threads and
the API's worker threads at once; WAL mode lets readers follow logs while a job writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bramble.files import private_database

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINAL_STATES: frozenset[str] = frozenset({"done", "failed", "cancelled"})
Stream = Literal["stdout", "stderr"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file TEXT NOT NULL,
    args TEXT NOT NULL,
    submitter TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted REAL NOT NULL,
    started REAL,
    finished REAL,
    exit_status INTEGER,
    error TEXT
);
CREATE TABLE IF NOT EXISTS job_output (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    ts REAL NOT NULL,
    stream TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_output_job ON job_output(job_id, seq);
CREATE TABLE IF NOT EXISTS execs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    submitter TEXT NOT NULL,
    command TEXT NOT NULL,
    nodes TEXT NOT NULL,
    timeout REAL NOT NULL,
    duration REAL,
    results TEXT
);
"""


class JobRecord(BaseModel):
    """One job as stored and as served by the API."""

    model_config = ConfigDict(frozen=True)

    id: int
    file: str
    args: list[str]
    submitter: str
    state: JobState
    submitted: float
    started: float | None = None
    finished: float | None = None
    exit_status: int | None = None
    error: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds the job has run (so far, if it still runs)."""
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


class OutputChunk(BaseModel):
    """A piece of a job's captured output; SEQ orders chunks across streams."""

    model_config = ConfigDict(frozen=True)

    seq: int
    ts: float
    stream: Stream
    data: str


class ExecRecord(BaseModel):
    """One logged `exec`: who ran what where, and what came back."""

    model_config = ConfigDict(frozen=True)

    id: int
    ts: float
    submitter: str
    command: str
    nodes: list[str]
    timeout: float
    duration: float | None = None
    results: dict[str, dict[str, object]] | None = None


class UnknownJobError(LookupError):
    """No job with that id."""


class JobStore:
    """The jobs database at PATH (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._version = 0
        private_database(path)
        with self._conn() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            with db:
                yield db
        finally:
            db.close()

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def version(self) -> int:
        """A counter bumped by every change this process makes (for long polls)."""
        return self._version

    def wait_change(self, since: int, timeout: float) -> int:
        """Block until the version moves past SINCE or TIMEOUT passes; return the version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != since, timeout)
            return self._version

    # --- jobs -------------------------------------------------------------------------

    def create(self, file: str, args: list[str], submitter: str, now: float) -> JobRecord:
        """Record a new queued job and return it."""
        with self._lock, self._conn() as db:
            cur = db.execute(
                "INSERT INTO jobs (file, args, submitter, state, submitted) VALUES (?,?,?,?,?)",
                (file, json.dumps(args), submitter, "queued", now),
            )
            job_id = cur.lastrowid
        assert job_id is not None
        return self.get(job_id)

    def get(self, job_id: int) -> JobRecord:
        """The job JOB_ID; UnknownJobError if there is none."""
        with self._conn() as db:
            row = db.execute(
                f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
        if row is None:
            raise UnknownJobError(job_id)
        return _job(row)

    def list_jobs(self, limit: int = 100, state: str | None = None) -> list[JobRecord]:
        """The newest LIMIT jobs, newest first, optionally only those in STATE."""
        query = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs"
        params: tuple[object, ...] = ()
        if state is not None:
            query += " WHERE state = ?"
            params = (state,)
        query += " ORDER BY id DESC LIMIT ?"
        with self._conn() as db:
            rows = db.execute(query, (*params, limit)).fetchall()
        return [_job(r) for r in rows]

    def mark_running(self, job_id: int, now: float) -> bool:
        """Move a queued job to running; False if it is no longer queued (cancelled)."""
        with self._lock, self._conn() as db:
            cur = db.execute(
                "UPDATE jobs SET state='running', started=? WHERE id=? AND state='queued'",
                (now, job_id),
            )
            moved = cur.rowcount == 1
        self._notify()
        return moved

    def finish(
        self,
        job_id: int,
        state: JobState,
        now: float,
        exit_status: int | None = None,
        error: str | None = None,
    ) -> JobRecord:
        """Record a job's end; a job already in a final state keeps it."""
        with self._lock, self._conn() as db:
            db.execute(
                "UPDATE jobs SET state=?, finished=?, exit_status=?, error=?"
                " WHERE id=? AND state NOT IN ('done','failed','cancelled')",
                (state, now, exit_status, error, job_id),
            )
        self._notify()
        return self.get(job_id)

    def fail_unfinished(self, now: float, reason: str) -> int:
        """Fail every job left queued or running by a previous master process."""
        with self._lock, self._conn() as db:
            cur = db.execute(
                "UPDATE jobs SET state='failed', finished=?, error=?"
                " WHERE state IN ('queued','running')",
                (now, reason),
            )
            return cur.rowcount

    def append_output(self, job_id: int, stream: Stream, data: str, now: float) -> None:
        """Append a chunk of captured output to the job's log."""
        with self._lock, self._conn() as db:
            db.execute(
                "INSERT INTO job_output (job_id, ts, stream, data) VALUES (?,?,?,?)",
                (job_id, now, stream, data),
            )
        self._notify()

    def output(self, job_id: int, after: int = 0) -> list[OutputChunk]:
        """The job's output chunks with a sequence number above AFTER, in order."""
        with self._conn() as db:
            rows = db.execute(
                "SELECT seq, ts, stream, data FROM job_output WHERE job_id=? AND seq>?"
                " ORDER BY seq",
                (job_id, after),
            ).fetchall()
        return [OutputChunk(seq=r[0], ts=r[1], stream=r[2], data=r[3]) for r in rows]

    def text(self, job_id: int, stream: Stream) -> str:
        """The whole of one captured stream."""
        return "".join(c.data for c in self.output(job_id) if c.stream == stream)

    # --- execs ------------------------------------------------------------------------

    def log_exec(
        self, submitter: str, command: str, nodes: list[str], timeout: float, now: float
    ) -> int:
        """Record an exec before it runs (so even one that hangs the master is logged)."""
        with self._lock, self._conn() as db:
            cur = db.execute(
                "INSERT INTO execs (ts, submitter, command, nodes, timeout) VALUES (?,?,?,?,?)",
                (now, submitter, command, json.dumps(nodes), timeout),
            )
            exec_id = cur.lastrowid
        assert exec_id is not None
        return exec_id

    def finish_exec(
        self, exec_id: int, duration: float, results: dict[str, dict[str, object]]
    ) -> None:
        """Record what an exec returned."""
        with self._lock, self._conn() as db:
            db.execute(
                "UPDATE execs SET duration=?, results=? WHERE id=?",
                (duration, json.dumps(results), exec_id),
            )

    def execs(self, limit: int = 100) -> list[ExecRecord]:
        """The newest LIMIT execs, newest first."""
        with self._conn() as db:
            rows = db.execute(
                "SELECT id, ts, submitter, command, nodes, timeout, duration, results"
                " FROM execs ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            ExecRecord(
                id=r[0],
                ts=r[1],
                submitter=r[2],
                command=r[3],
                nodes=json.loads(r[4]),
                timeout=r[5],
                duration=r[6],
                results=json.loads(r[7]) if r[7] else None,
            )
            for r in rows
        ]


_JOB_COLUMNS = (
    "id",
    "file",
    "args",
    "submitter",
    "state",
    "submitted",
    "started",
    "finished",
    "exit_status",
    "error",
)


def _job(row: tuple[object, ...]) -> JobRecord:
    fields = dict(zip(_JOB_COLUMNS, row, strict=True))
    fields["args"] = json.loads(str(fields["args"]))
    return JobRecord.model_validate(fields)
