"""The event stream hub: one encoding of each update, fanned out to every viewer.

Each viewer has a bounded queue. A viewer too slow to keep up is not waited for: its queue
is emptied and it gets a fresh snapshot instead, so one slow phone never delays the rest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

QUEUE_SIZE = 256
PING_EVERY = 15.0


def frame(event: str, data: Any) -> bytes:
    """One server-sent event, encoded."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Viewer:
    __slots__ = ("queue", "resync")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)
        self.resync = False


class Hub:
    """Viewers of the event stream, and the broadcast to them."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot
        self._viewers: set[_Viewer] = set()

    @property
    def viewers(self) -> int:
        """How many viewers are connected."""
        return len(self._viewers)

    def publish(self, event: str, data: Any) -> None:
        """Send EVENT with DATA to every viewer (encoded once)."""
        if not self._viewers:
            return
        encoded = frame(event, data)
        for viewer in self._viewers:
            if viewer.resync:
                continue
            try:
                viewer.queue.put_nowait(encoded)
            except asyncio.QueueFull:
                viewer.resync = True
                while not viewer.queue.empty():
                    viewer.queue.get_nowait()

    async def stream(self) -> AsyncIterator[bytes]:
        """One viewer's stream: retry hint, snapshot, then updates and pings."""
        viewer = _Viewer()
        self._viewers.add(viewer)
        try:
            yield b"retry: 2000\n\n" + frame("snapshot", self._snapshot())
            while True:
                if viewer.resync:
                    viewer.resync = False
                    yield frame("snapshot", self._snapshot())
                try:
                    item = await asyncio.wait_for(viewer.queue.get(), PING_EVERY)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                chunks = [item]
                while not viewer.queue.empty() and len(chunks) < 64:
                    chunks.append(viewer.queue.get_nowait())
                yield b"".join(chunks)
        finally:
            self._viewers.discard(viewer)
