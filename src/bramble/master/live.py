"""The master's live view of the cluster: the node table, the recent changes, the datagram
counts and the event stream, kept current by two small tasks on the event loop.

It is what the API (`api.NodeSource`) and `/metrics` (`prometheus.Source`) read. The table
is shared with the collector, which feeds it on the loop; the lock is for the API's request
threads, which read it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping

from bramble.master.collector import Stats as Counts
from bramble.master.events import Hub
from bramble.master.history import HistoryReader, HistoryWriter, Row
from bramble.master.nodes import NodeTable
from bramble.master.views import Change, NodeView, Snapshot, Stats
from bramble.telemetry.metrics import stored_values, values

log = logging.getLogger(__name__)
FLUSH_EVERY = 0.1
TICK_EVERY = 0.5
RECENT = 100


class Live:
    """The node table seen through time: views, changes, stats and the events that tell them."""

    def __init__(
        self,
        table: NodeTable,
        lock: threading.Lock,
        counts: Counts,
        writer: HistoryWriter,
        reader: HistoryReader,
    ) -> None:
        self.table = table
        self.lock = lock
        self.counts = counts
        self.writer = writer
        self.reader = reader
        self.hub = Hub(self.snapshot)
        self.recent: deque[Change] = deque(maxlen=RECENT)
        self._pending: list[Change] = []
        self._flushed: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- on the loop's side ---------------------------------------------------------------

    def start(self) -> None:
        """Load the recent changes from history, then flush and tick on the running loop."""
        self.recent.extend(self.reader.changes(RECENT)[::-1])
        self._tasks = [
            asyncio.create_task(self._flusher(), name="flusher"),
            asyncio.create_task(self._ticker(), name="ticker"),
        ]

    async def close(self) -> None:
        """Stop the tasks and hand history the rows not yet written."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.writer.put(self._history_rows(), self._pending)
        self._pending = []

    def on_changes(self, changes: list[Change]) -> None:
        """The collector's news (a node joined, came back, rebooted): told at the next flush."""
        self._pending.extend(changes)

    def _publish(self, changes: list[Change]) -> None:
        for change in changes:
            self.recent.append(change)
            self.hub.publish("change", change)
            if change.kind in ("down", "rebooted", "stale"):
                log.info("%s", change.message)

    async def _flusher(self) -> None:
        """Every 100 ms: changed nodes as one `nodes` event, and the changes waiting."""
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            now = time.time()
            changes, self._pending = self._pending, []
            with self.lock:
                names = self.table.drain_dirty()
                views = self.table.views(now, names) if names and self.hub.viewers else []
            if changes:
                self._publish(changes)
                self.writer.put([], changes)
            if views:
                self.hub.publish("nodes", views)
            elif names:
                self.hub.changed()

    async def _ticker(self) -> None:
        """Every 0.5 s: stale and down transitions; every second: stats and history rows."""
        last_second = 0.0
        while True:
            await asyncio.sleep(TICK_EVERY)
            now = time.time()
            with self.lock:
                changes = self.table.tick(now)
            if changes:
                self._publish(changes)
                self.writer.put([], changes)
            if now - last_second >= 1.0:
                last_second = now
                self.counts.mark(now)
                self.hub.publish("stats", self.stats())
                self.writer.put(self._history_rows(), [])

    def _history_rows(self) -> list[Row]:
        """A row for each node with a sample not yet written."""
        rows = []
        with self.lock:
            for state in self.table.nodes.values():
                if state.sample is None or self._flushed.get(state.name) == state.seq:
                    continue
                self._flushed[state.name] = state.seq
                values_ = stored_values(state.sample, state.net_rx, state.net_tx)
                rows.append((state.name, state.last_ts, values_, state.sample.cores))
        return rows

    # --- what the API reads (api.NodeSource) ----------------------------------------------

    def nodes(self) -> list[NodeView]:
        """Every node's view."""
        with self.lock:
            return self.table.views(time.time())

    def node(self, name: str) -> NodeView | None:
        """One node's view, or None."""
        with self.lock:
            return self.table.view(name, time.time())

    def stats(self) -> Stats:
        """Datagrams accepted and rejected, the rate, and the node count."""
        return self.counts.view(len(self.table.nodes))

    def changes(self, limit: int) -> list[Change]:
        """The newest LIMIT changes, newest first (call on the loop: it writes `recent`)."""
        recent = self.recent
        if limit <= len(recent) or len(recent) < RECENT:
            return list(recent)[::-1][:limit]
        return self.reader.changes(limit)  # SQLite has them within a second

    def snapshot(self) -> Snapshot:
        """What a new event-stream viewer gets first."""
        return Snapshot(nodes=self.nodes(), stats=self.stats(), changes=list(self.recent)[::-1])

    def events(self) -> AsyncIterator[bytes]:
        """One viewer's event stream."""
        return self.hub.stream()

    # --- what /metrics reads (prometheus.Source) ------------------------------------------

    def readings(self) -> list[tuple[str, str, Mapping[str, float] | None]]:
        """Each node's name, status and metrics (None before its first sample)."""
        now = time.time()
        with self.lock:
            return [
                (
                    s.name,
                    self.table.status_at(s, now),
                    values(s.sample, s.net_rx, s.net_tx) if s.sample else None,
                )
                for s in self.table.nodes.values()
            ]

    def datagrams(self) -> tuple[int, Mapping[str, int]]:
        """Datagrams accepted, and rejected by reason."""
        return self.counts.accepted, dict(self.counts.rejected)
