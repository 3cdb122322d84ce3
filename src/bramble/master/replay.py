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

from bramble.files import private_database

Window = tuple[int, int, float]
"""(boot, seq, sender's ts) of the newest datagram accepted from a node."""
KEEP = 4096
"""Nodes remembered at most (the newest first): a flood of names does not grow the file."""


class ReplayStore:
    """The windows file at PATH."""

    def __init__(self, path: Path) -> None:
        private_database(path)
        self._db = sqlite3.connect(path, timeout=10, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS window (node TEXT PRIMARY KEY, boot INTEGER NOT NULL, "
            "seq INTEGER NOT NULL, ts REAL NOT NULL)"
        )
        self._db.commit()
        self._lock = threading.Lock()

    def load(self) -> dict[str, Window]:
        """Every window saved, by node."""
        with self._lock:
            rows = self._db.execute(
                "SELECT node, boot, seq, ts FROM window ORDER BY ts DESC LIMIT ?", (KEEP,)
            ).fetchall()
        return {str(n): (int(b), int(s), float(t)) for n, b, s, t in rows}

    def save(self, windows: Mapping[str, Window]) -> None:
        """Record WINDOWS (those that moved since the last save)."""
        if not windows:
            return
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO window VALUES (?, ?, ?, ?)",
                [(n, b, s, t) for n, (b, s, t) in windows.items()],
            )
            count = self._db.execute("SELECT COUNT(*) FROM window").fetchone()[0]
            if count > KEEP:
                self._db.execute(
                    "DELETE FROM window WHERE node NOT IN "
                    "(SELECT node FROM window ORDER BY ts DESC LIMIT ?)",
                    (KEEP,),
                )
            self._db.commit()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
