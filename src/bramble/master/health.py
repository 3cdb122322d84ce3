"""What works in the master and what does not, part by part.

Every periodic task and background loop reports here: `ok` after a good round, `failed` with
what went wrong. A failure is counted (for /api/stats and /metrics), the part is shown as not
working, with why in words a user can act on ("disk full", "read-only"), and logged: the first
failure of a kind with its traceback, the same again at most once a minute in one line, so a
failing part can never flood the log. The loop itself goes on; the part recovers by itself
when a round succeeds again.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bramble.master.views import HealthView, PartView

log = logging.getLogger(__name__)

PARTS = ("collector", "flusher", "ticker", "history", "jobs", "notifier")
LOOPS = ("flusher", "ticker")
"""Parts that run rounds on their own: one that stops coming round is not working."""
LOG_EVERY = 60.0
KNOWN = ("disk full", "read-only", "permission denied", "database damaged")
"""Reasons `describe` puts in words: one of them is one kind of failure, whatever raised it."""
STALL = 5.0
"""A loop that has not finished a round for this many seconds is not working."""


def describe(error: BaseException | str, path: Path | None = None) -> str:
    """ERROR in a few words a user can act on; PATH, the file it was about, helps tell why
    (SQLite says only "unable to open database file" on a read-only disk)."""
    if isinstance(error, str):
        return error
    if path is not None:
        try:
            fs = os.statvfs(path.parent)
        except OSError:
            pass
        else:
            if fs.f_flag & os.ST_RDONLY:
                return "read-only"
            if fs.f_bavail == 0:
                return "disk full"
    text = str(error)
    lowered = text.lower()
    if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "disk is full" in lowered:
        return "disk full"
    if (
        (isinstance(error, OSError) and error.errno == errno.EROFS)
        or "readonly" in lowered
        or ("read-only" in lowered)
    ):
        return "read-only"
    if isinstance(error, PermissionError) or "permission denied" in lowered:
        return "permission denied"
    if isinstance(error, sqlite3.DatabaseError) and "malformed" in lowered:
        return "database damaged"
    return f"{type(error).__name__}: {text}"[:200]


@dataclass
class _Part:
    ok: bool = True
    detail: str = ""
    errors: int = 0
    since: float = 0.0
    beat: float | None = None  # monotonic time of the last good round, for loops


class Health:
    """The parts of one master; thread-safe (the history writer reports from its thread)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        now = clock()
        self._parts = {name: _Part(since=now) for name in PARTS}
        self._logged: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.history_flushed: float | None = None
        """When history last wrote its head to disk (the writer thread sets it)."""
        self.history_flush_seconds: float | None = None
        self.history_bytes: int | None = None
        self.history_max_bytes: int | None = None

    def ok(self, part: str) -> None:
        """PART just did its work."""
        with self._lock:
            state = self._parts[part]
            state.beat = time.monotonic()
            if state.ok:
                return
            state.ok, state.detail, state.since = True, "", self.clock()
        log.info("%s works again", part)

    def failed(self, part: str, error: BaseException | str, path: Path | None = None) -> None:
        """PART could not do its work because of ERROR (about the file PATH, if any); counted,
        shown, logged (rarely)."""
        detail = describe(error, path)
        with self._lock:
            state = self._parts[part]
            state.errors += 1
            if state.ok or state.detail != detail:
                state.since = self.clock()
            state.ok, state.detail = False, detail
            # one kind: the same reason in words (disk full from SQLite or from a write), or
            # else the same exception type
            known = isinstance(error, str) or detail in KNOWN
            key = (part, detail if known else type(error).__name__)
            now = time.monotonic()
            last = self._logged.get(key)
            due = last is None or now - last >= LOG_EVERY
            if due:
                self._logged[key] = now
        if not due:
            return
        if last is None and isinstance(error, BaseException):
            log.error("%s failed: %s (the same is logged at most once a minute)", part, detail,
                      exc_info=error)  # fmt: skip
        else:
            log.warning("%s still failing: %s (%d errors so far)", part, detail, state.errors)

    def works(self, part: str) -> bool:
        """Whether PART's last round went well."""
        with self._lock:
            return self._parts[part].ok

    def view(self) -> HealthView:
        """Each part: whether it works, why not, errors so far, since when."""
        now = time.monotonic()
        parts = {}
        with self._lock:
            for name, state in self._parts.items():
                ok, detail = state.ok, state.detail
                late = state.beat is not None and now - state.beat > STALL
                if ok and name in LOOPS and late:
                    ok, detail = False, f"no round for {now - (state.beat or now):.0f} s"
                parts[name] = PartView(ok=ok, detail=detail, errors=state.errors, since=state.since)
        return HealthView(
            ok=all(p.ok for p in parts.values()),
            parts=parts,
            history_flushed=self.history_flushed,
            history_flush_seconds=self.history_flush_seconds,
            history_bytes=self.history_bytes,
            history_max_bytes=self.history_max_bytes,
        )

    def errors(self) -> dict[str, int]:
        """Errors so far by part (those with any)."""
        with self._lock:
            return {name: s.errors for name, s in self._parts.items() if s.errors}

    def problems(self) -> list[str]:
        """What does not work, one line each (the dashboard's banner)."""
        return [f"{name}: {p.detail}" for name, p in self.view().parts.items() if not p.ok]
