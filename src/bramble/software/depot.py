"""What the master serves its nodes: its own wheel and the wheels of a directory, as a page pip
reads with `--no-index --find-links URL`.

Names in a request are never joined to a path: a file is served only if the directory's
listing has an entry of exactly that name, a regular file (not a link) named like a wheel.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bramble.software.own import OwnWheelError, Wheel

log = logging.getLogger(__name__)

WHEEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+!]*(-[A-Za-z0-9_.+!]+){4,5}\.whl$")
MAX_NAME = 200
RETRY_OWN_AFTER = 30.0  # seconds before a failed build of the master's wheel is tried again
WAIT_FOR_OWN = 5.0  # seconds a request waits for the master's wheel to be made
CHUNK = 256 * 1024


def wheel_name_ok(name: str) -> bool:
    """Whether NAME is a plain wheel file name: no separators, no dot-dot, not hidden."""
    return len(name) <= MAX_NAME and ".." not in name and bool(WHEEL_NAME.match(name))


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of the listing: its name, size, SHA-256, and where it is (None: in memory)."""

    name: str
    size: int
    sha256: str
    path: Path | None


def find_links_page(entries: list[Entry], *, version: str, note: str = "") -> str:
    """The HTML page pip reads with --find-links: one link per wheel, its hash in the link."""
    links = "\n".join(
        f'<a href="{html.escape(e.name)}#sha256={e.sha256}">{html.escape(e.name)}</a><br>'
        for e in entries
    )
    extra = f"<p>{html.escape(note)}</p>\n" if note else ""
    return (
        "<!doctype html>\n<html><head><meta charset=utf-8><title>bramble wheels</title></head>\n"
        f"<body>\n<h1>bramble {html.escape(version)} and its dependencies</h1>\n{extra}"
        f"{links}\n</body></html>\n"
    )


class Depot:
    """The master's own wheel (made once, on first use) and the wheels of WHEELS_DIR."""

    def __init__(self, wheels_dir: Path, make_own: Callable[[], Wheel]) -> None:
        self.wheels_dir = wheels_dir
        self._make_own = make_own
        self._lock = threading.Lock()
        self._own: Wheel | None = None
        self._failed: tuple[float, str] | None = None
        self._building: threading.Event | None = None
        self._hashes: dict[tuple[str, int, int, int], str] = {}

    def _build(self, done: threading.Event) -> None:
        try:
            wheel = self._make_own()
        except OwnWheelError as exc:
            log.warning("cannot serve bramble's own wheel: %s", exc)
            with self._lock:
                self._failed = (time.monotonic(), str(exc))
        else:
            with self._lock:
                self._own, self._failed = wheel, None
        finally:
            with self._lock:
                self._building = None
            done.set()

    def own(self, wait: float = WAIT_FOR_OWN) -> Wheel:
        """The master's own wheel, made once in a thread of its own (a build from a source
        tree takes a while, and no request should hang on it for long); OwnWheelError, saying
        why, when it is not there within WAIT seconds or cannot be made (tried again after a
        while)."""
        with self._lock:
            if self._own is not None:
                return self._own
            if self._failed is not None and time.monotonic() - self._failed[0] < RETRY_OWN_AFTER:
                raise OwnWheelError(self._failed[1])
            done = self._building
            if done is None:
                done = self._building = threading.Event()
                threading.Thread(
                    target=self._build, args=(done,), name="bramble-own-wheel", daemon=True
                ).start()
        if not done.wait(wait):
            raise OwnWheelError("it is being made (once per start of the master); ask again soon")
        with self._lock:
            if self._own is not None:
                return self._own
            raise OwnWheelError(self._failed[1] if self._failed else "it could not be made")

    def _digest(self, path: Path, info: os.stat_result) -> str:
        key = (path.name, info.st_size, info.st_mtime_ns, info.st_ino)
        known = self._hashes.get(key)
        if known is None:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
            known = self._hashes[key] = digest.hexdigest()
        return known

    def directory(self) -> list[Entry]:
        """The wheels of the directory: regular files named like wheels, sorted by name."""
        entries = []
        try:
            scan = list(os.scandir(self.wheels_dir))
        except OSError:
            return []
        for item in sorted(scan, key=lambda i: i.name):
            if not wheel_name_ok(item.name) or not item.is_file(follow_symlinks=False):
                continue
            try:
                info = item.stat(follow_symlinks=False)
                digest = self._digest(Path(item.path), info)
            except OSError:
                continue
            entries.append(Entry(item.name, info.st_size, digest, Path(item.path)))
        return entries

    def listing(self) -> tuple[list[Entry], str]:
        """Every wheel served (the master's own first), and a note when it is missing."""
        note = ""
        entries: list[Entry] = []
        try:
            own = self.own()
            entries.append(Entry(own.filename, len(own.data), own.sha256, None))
        except OwnWheelError as exc:
            note = f"bramble's own wheel is missing: {exc}"
        seen = {e.name for e in entries}
        entries += [e for e in self.directory() if e.name not in seen]
        return entries, note

    def find(self, name: str) -> Entry | None:
        """The entry called exactly NAME, if the listing has it."""
        if not wheel_name_ok(name):
            return None
        entries, _ = self.listing()
        return next((e for e in entries if e.name == name), None)


def open_entry(entry: Entry) -> tuple[int, Iterator[bytes]] | None:
    """The size and chunks of a listed file, opened without following links (None if it
    changed into something else since it was listed)."""
    if entry.path is None:
        return None
    try:
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None

    file = os.fdopen(fd, "rb")  # closed when read to the end, or when collected unread

    def chunks() -> Iterator[bytes]:
        with file:
            while chunk := file.read(CHUNK):
                yield chunk

    return info.st_size, chunks()
