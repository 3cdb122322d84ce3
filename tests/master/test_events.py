"""The event stream hub: a shared snapshot, and a backlog bounded by age and size."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from bramble.master.events import Hub


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def events(data: bytes) -> list[tuple[str, Any]]:
    """The (event, data) pairs in a chunk of the stream (pings and retry hints left out)."""
    out = []
    for block in data.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


class Counter:
    """A snapshot function that counts its calls and says which call it is."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {"call": self.calls, "nodes": [{"name": f"n{i}"} for i in range(3)]}


async def first(stream: AsyncIterator[bytes]) -> list[tuple[str, Any]]:
    return events(await anext(stream))


def test_viewers_connecting_together_share_one_snapshot() -> None:
    async def main() -> None:
        snap = Counter()
        hub = Hub(snap)
        streams = [hub.stream() for _ in range(5)]
        got = [await first(s) for s in streams]
        assert snap.calls == 1 and hub.snapshots == 1
        assert all(g == [("snapshot", got[0][0][1])] for g in got)
        assert hub.viewers == 5
        # An update makes the shared snapshot old: the next viewer gets a new one.
        hub.publish("nodes", [{"name": "n1", "cpu": 0.5}])
        late = hub.stream()
        assert (await first(late))[0][1]["call"] == 2
        # ...and the earlier viewers get the update itself, not a snapshot.
        assert events(await anext(streams[0])) == [("nodes", [{"name": "n1", "cpu": 0.5}])]
        hub.changed()  # state changed without an event: the snapshot is rebuilt too
        assert (await first(hub.stream()))[0][1]["call"] == 3
        for s in [*streams, late]:
            await s.aclose()  # type: ignore[attr-defined]
        assert hub.viewers == 1  # the last one was never closed

    run(main())


def test_updates_waiting_together_arrive_in_order_in_one_write() -> None:
    async def main() -> None:
        hub = Hub(Counter())
        stream = hub.stream()
        await first(stream)
        for i in range(3):
            hub.publish("nodes", [{"seq": i}])
        assert events(await anext(stream)) == [("nodes", [{"seq": i}]) for i in range(3)]
        assert hub.resyncs == 0

    run(main())


def test_a_viewer_lagging_past_max_lag_gets_a_fresh_snapshot_not_old_data() -> None:
    async def main() -> None:
        hub = Hub(Counter(), max_lag=0.05)
        slow, fast = hub.stream(), hub.stream()
        await first(slow)
        await first(fast)
        hub.publish("nodes", [{"seq": 0}])
        assert events(await anext(fast)) == [("nodes", [{"seq": 0}])]
        time.sleep(0.06)  # the slow viewer has read nothing for longer than max_lag
        hub.publish("nodes", [{"seq": 1}])
        assert hub.resyncs == 1
        got = events(await anext(slow))
        assert [e for e, _ in got] == ["snapshot"], got  # old frames dropped
        assert got[0][1]["call"] == 2
        # The fast viewer was not held back, and later updates reach both in order.
        assert events(await anext(fast)) == [("nodes", [{"seq": 1}])]
        hub.publish("nodes", [{"seq": 2}])
        assert events(await anext(slow)) == [("nodes", [{"seq": 2}])]
        assert events(await anext(fast)) == [("nodes", [{"seq": 2}])]

    run(main())


def test_a_viewer_whose_backlog_passes_max_bytes_is_resynced() -> None:
    async def main() -> None:
        hub = Hub(Counter(), max_bytes=200)
        stream = hub.stream()
        await first(stream)
        for i in range(20):
            hub.publish("nodes", [{"seq": i, "pad": "x" * 20}])
        assert hub.resyncs == 1  # once: a viewer waiting for its snapshot is not counted again
        got = events(await anext(stream))
        assert [e for e, _ in got] == ["snapshot"]

    run(main())
