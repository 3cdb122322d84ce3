"""The replay window, kept across restarts: the newest (boot, seq, ts) accepted per node.

Without it a restarted master would accept again every datagram captured in the last clock
window. The master saves the windows that moved, about once a second and when it stops,
into a small SQLite file of their own beside the history (`replay.db`, mode 0600), and loads
them into the node table when it starts: a datagram is then accepted only if it is newer
than the last one accepted before the restart. A kill -9 loses at most the last second.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from bramble.files import open_private_database

Window = tuple[int, int, float]
"""(boot, seq, sender's ts) of the newest datagram accepted from a node."""
KEEP = 4096
"""Nodes remembered at most (the newest first): a flood of names does not grow the file."""


class ReplayStore:
    """The windows file at PATH."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> ReplayStore:
        """Open (creating if need be) the file; this store, for chaining."""
        self._db = open_private_database(
            self.path,
            [
                "PRAGMA synchronous=NORMAL",
                "CREATE TABLE IF NOT EXISTS window (node TEXT PRIMARY KEY, boot INTEGER NOT NULL, "
                "seq INTEGER NOT NULL, ts REAL NOT NULL)",
            ],
        )
        return self

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection (RuntimeError before `open`)."""
        if self._db is None:
            raise RuntimeError(f"the replay windows at {self.path} are not open")
        return self._db

    def load(self) -> dict[str, Window]:
        """Every window saved, by node."""
        with self._lock:
            rows = self.db.execute(
                "SELECT node, boot, seq, ts FROM window ORDER BY ts DESC LIMIT ?", (KEEP,)
            ).fetchall()
        return {str(n): (int(b), int(s), float(t)) for n, b, s, t in rows}

    def save(self, windows: Mapping[str, Window]) -> None:
        """Record WINDOWS (those that moved since the last save)."""
        if not windows:
            return
        with self._lock:
            self.db.executemany(
                "INSERT OR REPLACE INTO window VALUES (?, ?, ?, ?)",
                [(n, b, s, t) for n, (b, s, t) in windows.items()],
            )
            count = self.db.execute("SELECT COUNT(*) FROM window").fetchone()[0]
            if count > KEEP:
                self.db.execute(
                    "DELETE FROM window WHERE node NOT IN "
                    "(SELECT node FROM window ORDER BY ts DESC LIMIT ?)",
                    (KEEP,),
                )
            self.db.commit()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
