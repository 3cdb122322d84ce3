"""The event stream hub: one encoding of each update, fanned out to every viewer.

Each viewer has a backlog bounded by age and size. A viewer too slow to keep up is not
waited for: its backlog is dropped and it gets a fresh snapshot instead, so one slow phone
never delays the rest and no viewer is ever shown data seconds old.

The snapshot is encoded once and shared by every viewer that needs one until the next
update is published, so a hundred viewers (re)connecting at once cost one encoding, not a
hundred: building and encoding a snapshot per viewer used to hold the event loop for
seconds, which delayed every other viewer's updates and pushed more viewers into resync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic_core import to_json

MAX_LAG = 2.0
MAX_BYTES = 8 << 20
PING_EVERY = 15.0


def frame(event: str, data: Any) -> bytes:
    """One server-sent event: DATA (models, or plain JSON data) encoded as compact JSON."""
    return b"event: " + event.encode() + b"\ndata: " + to_json(data) + b"\n\n"


class _Viewer:
    __slots__ = ("frames", "resync", "since", "size", "wake")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.size = 0
        self.since = 0.0  # monotonic time the oldest waiting frame was published
        self.resync = False
        self.wake = asyncio.Event()

    def take(self) -> bytes:
        """Every waiting frame, as one write."""
        data = b"".join(self.frames)
        self.frames.clear()
        self.size = 0
        self.wake.clear()
        return data


class Hub:
    """Viewers of the event stream, and the broadcast to them."""

    def __init__(
        self,
        snapshot: Callable[[], Any],
        *,
        max_lag: float = MAX_LAG,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._snapshot = snapshot
        self._snapshot_frame: bytes | None = None
        self._viewers: set[_Viewer] = set()
        self.max_lag = max_lag
        self.max_bytes = max_bytes
        self.snapshots = 0
        self.resyncs = 0

    @property
    def viewers(self) -> int:
        """How many viewers are connected."""
        return len(self._viewers)

    def changed(self) -> None:
        """The state changed without an event (no viewers to tell): forget the snapshot."""
        self._snapshot_frame = None

    def snapshot_frame(self) -> bytes:
        """The current snapshot, encoded once for every viewer until the next publish."""
        if self._snapshot_frame is None:
            self._snapshot_frame = frame("snapshot", self._snapshot())
            self.snapshots += 1
        return self._snapshot_frame

    def publish(self, event: str, data: Any) -> None:
        """Send EVENT with DATA to every viewer (encoded once)."""
        self._snapshot_frame = None
        if not self._viewers:
            return
        encoded = frame(event, data)
        now = time.monotonic()
        for viewer in self._viewers:
            if viewer.resync:
                continue
            if viewer.frames and (
                now - viewer.since > self.max_lag or viewer.size + len(encoded) > self.max_bytes
            ):
                viewer.resync = True
                viewer.take()
                viewer.wake.set()
                self.resyncs += 1
                continue
            if not viewer.frames:
                viewer.since = now
            viewer.frames.append(encoded)
            viewer.size += len(encoded)
            viewer.wake.set()

    async def stream(self) -> AsyncIterator[bytes]:
        """One viewer's stream: retry hint, snapshot, then updates and pings."""
        viewer = _Viewer()
        self._viewers.add(viewer)
        try:
            yield b"retry: 2000\n\n" + self.snapshot_frame()
            while True:
                if not viewer.wake.is_set():
                    try:
                        await asyncio.wait_for(viewer.wake.wait(), PING_EVERY)
                    except TimeoutError:
                        yield b": ping\n\n"
                        continue
                if viewer.resync:
                    # no await between clearing the flag and taking the snapshot: every
                    # update published after this snapshot reaches the backlog
                    viewer.resync = False
                    viewer.take()
                    yield self.snapshot_frame()
                else:
                    yield viewer.take()
        finally:
            self._viewers.discard(viewer)
