"""The replay window, kept across restarts: the newest (boot, seq, ts) accepted per node.

Without it a restarted master would accept again every datagram captured in the last clock
window. The master saves the windows about once a second and when it stops, and loads them
into the node table when it starts: a datagram is then accepted only if it is newer than
the last one accepted before the restart.

Why a flat file of its own, rewritten in place, and not SQLite: an SD card wears out by
writes, and what the kernel counts (and later writes) is each page that *becomes* dirty, not
each rewrite of a page already dirty. SQLite in WAL mode appends every commit to the WAL,
new pages each second: 8.6 KB/s for 50 nodes, most of what the master wrote
(bench/RESULTS.md). This file is two slots rewritten in place with `pwrite`, never synced
while the master runs, so its few pages stay dirty in the page cache between the kernel's
writebacks and are written about once per writeback period (30 s by default), whatever the
save rate. The saves cost a system call a second and no appends.

What it protects, case by case:

- SIGTERM, a clean stop: the last save runs after the collector has stopped and is synced
  (`close`): nothing accepted is forgotten.
- kill -9 (or a crash of the master): everything written is in the page cache, which the
  kernel writes in its own time; a restart reads it back. What is lost is only what was
  accepted after the last save, at most a second (the save period), as before.
- A write cut short (a kill between the pages of one `pwrite`, or a power cut while the
  kernel writes the pages back): each slot carries a CRC-32 of its contents and a generation,
  and the two slots are written in turn, so at most the slot being written is torn and the
  other holds the save before it. A torn slot is ignored.
- Power loss: what the kernel had not written back yet is lost (up to its writeback period,
  about 30 s), as with SQLite at `synchronous=NORMAL` before. If neither slot is whole
  (both torn, or the file lost), the windows are treated as absent: the master starts
  with none and says so in its log, and until its nodes' next datagrams move their windows
  past them, datagrams captured within the spec's clock window before the stop would be
  accepted once more. No other datagram is: the signature and the clock window still hold.

The file is `replay.windows`, mode 0600; a `replay.db` (the SQLite file of earlier versions)
is read once when no windows file exists yet, then removed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

Window = tuple[int, int, float]
"""(boot, seq, sender's ts) of the newest datagram accepted from a node."""
KEEP = 4096
"""Nodes remembered at most (the newest first): a flood of names does not grow the file."""

MAGIC = b"BRW1"
SLOT_HEAD = struct.Struct("<4sIQdI")
"""A slot's header: magic, CRC-32 of the rest (from the generation on), generation, time
saved (the master's clock), payload length."""
RECORD = struct.Struct("<qqdH")
"""A window in the payload: boot, seq, ts, then the length of the node's UTF-8 name."""
PAGE = 4096
LEGACY = "replay.db"


def encode_windows(windows: Mapping[str, Window]) -> bytes:
    """WINDOWS as a slot's payload."""
    parts = []
    for name, (boot, seq, ts) in windows.items():
        raw = name.encode()
        parts.append(RECORD.pack(boot, seq, ts, len(raw)) + raw)
    return b"".join(parts)


def decode_windows(payload: bytes) -> dict[str, Window]:
    """A slot's payload as windows (ValueError if it does not parse)."""
    out: dict[str, Window] = {}
    i = 0
    while i < len(payload):
        if i + RECORD.size > len(payload):
            raise ValueError("a window is cut short")
        boot, seq, ts, size = RECORD.unpack_from(payload, i)
        i += RECORD.size
        if i + size > len(payload):
            raise ValueError("a node name is cut short")
        out[payload[i : i + size].decode()] = (boot, seq, ts)
        i += size
    return out


def encode_slot(generation: int, saved: float, windows: Mapping[str, Window]) -> bytes:
    """One slot: its header, then WINDOWS."""
    payload = encode_windows(windows)
    rest = struct.pack("<QdI", generation, saved, len(payload)) + payload
    return MAGIC + struct.pack("<I", zlib.crc32(rest)) + rest


def decode_slot(data: bytes) -> tuple[int, float, dict[str, Window]] | None:
    """(generation, time saved, windows) of the slot at the start of DATA, or None if it is
    not a whole slot (never written, torn, or damaged)."""
    if len(data) < SLOT_HEAD.size:
        return None
    magic, crc, generation, saved, length = SLOT_HEAD.unpack_from(data)
    end = SLOT_HEAD.size + length
    if magic != MAGIC or end > len(data) or zlib.crc32(data[8:end]) != crc:
        return None
    try:
        return generation, saved, decode_windows(data[SLOT_HEAD.size : end])
    except (ValueError, struct.error):
        return None


def slot_size(needed: int) -> int:
    """The slot size for a slot of NEEDED bytes: whole pages, doubling, so the file is
    rebuilt rarely as nodes come."""
    size = PAGE
    while size < needed:
        size *= 2
    return size


def read_windows(data: bytes) -> tuple[int, dict[str, Window]] | None:
    """The newest whole slot of a windows file's DATA as (generation, windows); None if
    neither slot is whole. The slots are the file's two halves."""
    half = len(data) // 2
    found = [s for s in (decode_slot(data[:half]), decode_slot(data[half:])) if s is not None]
    if not found:
        return None
    generation, _, windows = max(found, key=lambda s: s[0])
    return generation, windows


def newest(windows: Mapping[str, Window], keep: int = KEEP) -> dict[str, Window]:
    """The KEEP windows of WINDOWS with the latest ts."""
    if len(windows) <= keep:
        return dict(windows)
    chosen = sorted(windows.items(), key=lambda item: item[1][2], reverse=True)[:keep]
    return dict(chosen)


class ReplayStore:
    """The windows file at PATH."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 0  # of a slot; the file holds two
        self._generation = 0
        self._windows: dict[str, Window] = {}
        self._lock = threading.Lock()

    def open(self) -> ReplayStore:
        """Open (creating if need be) the file, reading the windows it holds; this store,
        for chaining."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.chmod(self.path, 0o600)
            data = _read_all(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        found = read_windows(data)
        if found is not None:
            self._generation, self._windows = found
            self._size = len(data) // 2
        elif data.strip(b"\0"):
            log.warning(
                "replay windows: %s is damaged (a power cut while it was written?): starting "
                "without them, so datagrams captured within the clock window before the stop "
                "may be accepted once more",
                self.path,
            )
        else:
            legacy = self.path.with_name(LEGACY)
            if legacy.exists():
                self._windows = _read_legacy(legacy)
                self.save({})
                for name in (legacy, *(legacy.with_name(LEGACY + s) for s in ("-wal", "-shm"))):
                    name.unlink(missing_ok=True)
        return self

    def load(self) -> dict[str, Window]:
        """Every window saved, by node."""
        with self._lock:
            return dict(self._windows)

    def save(self, windows: Mapping[str, Window]) -> None:
        """Record WINDOWS (those that moved since the last save) with the rest, writing the
        older slot in place."""
        with self._lock:
            fd = self._fd
            if fd is None:
                raise RuntimeError(f"the replay windows at {self.path} are not open")
            merged = newest({**self._windows, **windows})
            slot = encode_slot(self._generation + 1, time.time(), merged)
            if len(slot) > self._size:
                self._rebuild(slot)
            else:
                index = (self._generation + 1) % 2
                os.pwrite(fd, slot, index * self._size)
            self._generation += 1
            self._windows = merged

    def _rebuild(self, slot: bytes) -> None:
        """A file with larger slots, both holding SLOT, put in place by a rename (rare: the
        node count doubled)."""
        size = slot_size(len(slot))
        data = slot.ljust(size, b"\0") * 2
        temporary = self.path.with_name(self.path.name + ".new")
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.pwrite(fd, data, 0)
            os.fsync(fd)
            os.replace(temporary, self.path)
        except OSError:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        assert self._fd is not None
        os.close(self._fd)
        self._fd, self._size = fd, size

    def close(self) -> None:
        """Sync and close the file (the last save is on the disk)."""
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    parts, offset = [], 0
    while offset < size:
        part = os.pread(fd, size - offset, offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
    return b"".join(parts)


def _read_legacy(path: Path) -> dict[str, Window]:
    """The windows an earlier version kept in SQLite at PATH; none if it cannot be read."""
    try:
        db = sqlite3.connect(path)
        try:
            rows = db.execute(
                "SELECT node, boot, seq, ts FROM window ORDER BY ts DESC LIMIT ?", (KEEP,)
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        log.warning("replay windows: %s could not be read: %s", path, exc)
        return {}
    return {str(n): (int(b), int(s), float(t)) for n, b, s, t in rows}
