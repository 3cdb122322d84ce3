"""Files the master keeps: created private to their owner."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path


def private_database(path: Path) -> None:
    """Make sure the SQLite database at PATH exists with mode 0600 before SQLite opens it.

    SQLite gives its -wal and -shm files the database file's mode, so they stay private too;
    files left by an older version are made private here as well. The database's directory
    is created if missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            pass


def open_private_database(path: Path, schema: Iterable[str] = ()) -> sqlite3.Connection:
    """PATH as a private SQLite database (mode 0600, see `private_database`) in WAL mode,
    shared by threads, with the SCHEMA statements run and committed."""
    private_database(path)
    db = sqlite3.connect(path, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    for statement in schema:
        db.execute(statement)
    db.commit()
    return db
