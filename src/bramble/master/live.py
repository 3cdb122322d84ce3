"""The master's live view of the cluster: the node table, the recent changes, the datagram
counts and the event stream, kept current by two small tasks on the event loop.

Both tasks are supervised: a round that fails is counted and logged (rarely) by `Health`, and
the next round runs. Every sample the collector takes is kept for history, not just the
latest at each tick; the replay window is saved once a second
(`replay`) so a restart does not reopen it.

It is what the API (`api.NodeSource`) and `/metrics` (`prometheus.Source`) read. The table
is shared with the collector, which feeds it on the loop; the lock is for the API's request
threads, which read it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping

from bramble.master import limits
from bramble.master.alerts import Alerts, readings
from bramble.master.collector import Stats as Counts
from bramble.master.events import Hub
from bramble.master.health import Health
from bramble.master.history import HistoryWriter, Row
from bramble.master.history_reader import HistoryReader
from bramble.master.nodes import DOWN, NodeState, NodeTable, filesystems
from bramble.master.replay import ReplayStore, Window
from bramble.master.silences import Silences
from bramble.master.views import (
    AlertView,
    Change,
    HealthView,
    NodeView,
    ProcessesView,
    Snapshot,
    Stats,
)
from bramble.telemetry.metrics import stored_values, values
from bramble.telemetry.wire import Sample

log = logging.getLogger(__name__)
FLUSH_EVERY = 0.1
TICK_EVERY = 0.5
RECENT = 100
MAX_VIEWERS = 500
"""Event streams at once: each holds a socket; past this a new viewer is told to come back."""
MAX_PENDING = 200_000
"""Samples waiting for history at most (about 10 s of 20,000 datagrams a second)."""


class Live:
    """The node table seen through time: views, changes, stats and the events that tell them."""

    def __init__(
        self,
        table: NodeTable,
        lock: threading.Lock,
        counts: Counts,
        writer: HistoryWriter,
        reader: HistoryReader,
        *,
        health: Health | None = None,
        replay: ReplayStore | None = None,
        alerts: Alerts | None = None,
        silences: Silences | None = None,
        max_viewers: int = MAX_VIEWERS,
    ) -> None:
        self.table = table
        self.lock = lock
        self.counts = counts
        self.writer = writer
        self.reader = reader
        self.health = health or Health()
        self.replay = replay
        self.hub = Hub(self.snapshot)
        self.viewers = limits.Gate("events", max_viewers)
        self.recent: deque[Change] = deque(maxlen=RECENT)
        self._pending: list[Change] = []
        # the samples taken since the last tick, for history: every one
        self._samples: list[tuple[str, float, Sample, float, float, dict[str, float]]] = []
        self._moved: set[str] = set()  # nodes whose replay window moved since the last save
        self._internal = 0
        self._tasks: list[asyncio.Task[None]] = []
        # Told every change as it is published, on the loop; each must return at once (the
        # jobs service's liveness follower queues what it needs).
        self.listeners: list[Callable[[list[Change]], None]] = []
        self.alerts = alerts
        self.silences = silences
        # Told every alert that fires or resolves, on the loop; each must return at once.
        self.alert_listeners: list[Callable[[list[AlertView]], None]] = []
        self._wakes: dict[int, asyncio.TimerHandle] = {}  # alert tests due, by 50 ms

    # --- on the loop's side ---------------------------------------------------------------

    def start(self) -> None:
        """Load the recent changes and the replay windows, then flush and tick on the loop."""
        try:
            self.recent.extend(self.reader.changes(RECENT)[::-1])
        except Exception as exc:  # an unreadable history: live data serves all the same
            self.health.failed("history", exc, self.reader.path)
        if self.replay is not None:
            with self.lock:
                self.table.remember(self.replay.load())
        self._tasks = [
            asyncio.create_task(self._every(FLUSH_EVERY, "flusher", self._flush), name="flusher"),
            asyncio.create_task(self._every(TICK_EVERY, "ticker", self._tick), name="ticker"),
        ]

    async def close(self) -> None:
        """Stop the tasks, hand history the rows not yet written, save the replay windows."""
        for handle in self._wakes.values():
            handle.cancel()
        self._wakes.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.writer.put(self._history_rows(), self._pending)
        self._pending = []
        self._save_windows()

    async def _every(self, period: float, part: str, body: Callable[[], None]) -> None:
        """BODY every PERIOD seconds, for ever: a round that fails is reported, the next runs."""
        while True:
            await asyncio.sleep(period)
            try:
                body()
            except Exception as exc:
                self.health.failed(part, exc)
            else:
                self.health.ok(part)

    def on_sample(self, state: NodeState) -> None:
        """The collector took a sample of STATE's node (on the loop): keep it for history."""
        if state.sample is None:
            return
        if len(self._samples) >= MAX_PENDING:
            self.counts.rejected["history_behind"] += 1
            return
        self._samples.append(
            (state.name, state.last_ts, state.sample, state.net_rx, state.net_tx, state.rates)
        )
        if state.signed:
            self._moved.add(state.name)
        alerts = self.alerts
        if alerts is not None:
            # the sender's clock against ours when it arrived (a signed sender's is checked)
            offset = state.last_ts - state.last_seen if state.signed else None
            seen = readings(state.sample, state.net_rx, state.net_tx, alerts.metrics,
                            clock_offset=offset, rates=state.rates)  # fmt: skip
            with self.lock:
                told = alerts.observe(state.name, seen, state.last_seen)
                due = alerts.next_change(state.name)
            if told:
                self._alerted(told)
            if due is not None:
                self._wake_at(due)

    def _wake_at(self, when: float) -> None:
        """Test the alerts again at WHEN (epoch seconds), not at the next tick: a pending
        alert fires as its `for` ends. One wake-up per 50 ms at most."""
        bucket = round(when * 20)
        if bucket in self._wakes:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop: the ticker will do
            return
        delay = max(0.0, when - time.time()) + 0.001
        self._wakes[bucket] = loop.call_later(delay, self._woken, bucket)

    def _woken(self, bucket: int) -> None:
        self._wakes.pop(bucket, None)
        if self.alerts is None:
            return
        try:
            self._tick_alerts(self.alerts, time.time())
        except Exception as exc:
            self.health.failed("ticker", exc)

    def _alerted(self, told: list[AlertView]) -> None:
        """Alerts that fired or resolved: to the event stream, the log and the listeners."""
        told = self._mark_silenced(told)
        for alert in told:
            self.hub.publish("alert", alert)
            log.info("alert %s on %s: %s (%s)", alert.rule, alert.node, alert.state,
                     alert.condition)  # fmt: skip
        for listener in self.alert_listeners:
            try:
                listener(told)
            except Exception:  # a listener's bug must not stop the live view
                log.exception("an alert listener failed")

    def on_changes(self, changes: list[Change]) -> None:
        """The collector's news (a node joined, came back, rebooted): told at the next flush."""
        self._pending.extend(changes)

    def _publish(self, changes: list[Change]) -> None:
        for change in changes:
            self.recent.append(change)
            self.hub.publish("change", change)
            if change.kind in ("down", "rebooted", "stale"):
                log.info("%s", change.message)
        for listener in self.listeners:
            try:
                listener(changes)
            except Exception:  # a listener's bug must not stop the live view
                log.exception("a change listener failed")

    def _flush(self) -> None:
        """Every 100 ms: changed nodes as one `nodes` event, and the changes waiting."""
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

    _last_second = 0.0

    def _tick(self) -> None:
        """Every 0.5 s: stale and down transitions; every second: stats, history rows and the
        replay windows."""
        now = time.time()
        with self.lock:
            changes = self.table.tick(now)
        if changes:
            self._publish(changes)
            self.writer.put([], changes)
        if self.alerts is not None:
            self._tick_alerts(self.alerts, now)
        if now - self._last_second >= 1.0:
            self._last_second = now
            self.counts.mark(now)
            self._collector_health()
            self.hub.publish("stats", self.stats())
            self.writer.put(self._history_rows(), [])
            self._save_windows()

    def _tick_alerts(self, alerts: Alerts, now: float) -> None:
        """Time passes for the alerts: pending ones reach their `for`, down nodes fire, nodes
        gone from the table resolve theirs, the master's own signals are tested."""
        master = {"history_stopped": 0.0 if self.health.works("history") else 1.0}
        with self.lock:
            nodes = self.table.nodes
            down = [s.name for s in nodes.values() if s.status == DOWN]
            told = []
            for gone in alerts.nodes() - nodes.keys() - {alerts.master}:
                told += alerts.forget(gone, now)
            told += alerts.tick(now, down, master)
        if told:
            self._alerted(told)

    def alert_views(self) -> list[AlertView]:
        """Every alert pending, firing or resolved a short while ago."""
        if self.alerts is None:
            return []
        with self.lock:
            views = self.alerts.views()
        return self._mark_silenced(views)

    def _mark_silenced(self, views: list[AlertView]) -> list[AlertView]:
        silences, now = self.silences, time.time()
        if silences is None:
            return views
        return [
            v.model_copy(update={"silenced": True}) if silences.matches(v, now) else v
            for v in views
        ]

    def _collector_health(self) -> None:
        """The collector works again once a while has passed with no internal error."""
        internal = self.counts.rejected.get("internal", 0)
        if internal == self._internal:
            self.health.ok("collector")
        self._internal = internal

    def _history_rows(self) -> list[Row]:
        """A row for each sample taken since the last call."""
        samples, self._samples = self._samples, []
        return [
            (name, ts, stored_values(sample, rx, tx, rates), sample.cores)
            for name, ts, sample, rx, tx, rates in samples
        ]

    def _save_windows(self) -> None:
        """Save the replay windows that moved (a small write in place, once a second)."""
        if self.replay is None or not self._moved:
            return
        moved, self._moved = self._moved, set()
        with self.lock:
            windows: dict[str, Window] = {}
            for name in moved:
                window = self.table.window(name)
                if window is not None:
                    windows[name] = window
        try:
            self.replay.save(windows)
        except Exception as exc:
            self.health.failed("history", exc, self.replay.path)
            self._moved |= moved

    # --- what the API reads (api.NodeSource) ----------------------------------------------

    def nodes(self) -> list[NodeView]:
        """Every node's view."""
        with self.lock:
            return self.table.views(time.time())

    def node(self, name: str) -> NodeView | None:
        """One node's view, with its filesystems; or None."""
        with self.lock:
            view = self.table.view(name, time.time())
            state = self.table.nodes.get(name)
            if view is not None and state is not None and state.sample is not None:
                view["filesystems"] = filesystems(state.sample)
            return view

    def processes(self, name: str) -> ProcessesView | None:
        """One node's latest top processes, or None for an unknown node."""
        with self.lock:
            return self.table.processes(name)

    def stats(self) -> Stats:
        """Datagrams accepted and rejected, the rate, the node count, and what fails."""
        return self.counts.view(len(self.table.nodes)).model_copy(
            update={
                "errors": self.health.errors(),
                "refused": dict(limits.refused),
                "problems": self.health.problems(),
                "history_flushed": self.health.history_flushed,
            }
        )

    def health_view(self) -> HealthView:
        """What works, part by part."""
        return self.health.view()

    def changes(self, limit: int) -> list[Change]:
        """The newest LIMIT changes, newest first (call on the loop: it writes `recent`)."""
        recent = self.recent
        if limit <= len(recent) or len(recent) < RECENT:
            return list(recent)[::-1][:limit]
        try:
            return self.reader.changes(limit)  # SQLite has them within a second
        except (sqlite3.Error, OSError):  # history cannot be read: what is in memory
            return list(recent)[::-1][:limit]

    def snapshot(self) -> Snapshot:
        """What a new event-stream viewer gets first."""
        # built from values made here, so not validated again (a snapshot of 1,000 nodes)
        return Snapshot.model_construct(
            nodes=self.nodes(),
            stats=self.stats(),
            changes=list(self.recent)[::-1],
            alerts=self.alert_views(),
        )

    def events(self) -> AsyncIterator[bytes] | None:
        """One viewer's event stream; None when MAX_VIEWERS are watching already (they
        `leave` when their stream ends)."""
        if not self.viewers.enter():
            return None
        return self.hub.stream()

    def leave(self) -> None:
        """A viewer's stream has ended."""
        self.viewers.leave()

    # --- what /metrics reads (prometheus.Source) ------------------------------------------

    def readings(self) -> list[tuple[str, str, bool, Mapping[str, float] | None]]:
        """Each node's name, status, whether it signs, and metrics (None before a sample)."""
        now = time.time()
        with self.lock:
            return [
                (
                    s.name,
                    self.table.status_at(s, now),
                    s.signed,
                    values(s.sample, s.net_rx, s.net_tx, s.rates) if s.sample else None,
                )
                for s in self.table.nodes.values()
            ]

    def boards(self) -> list[tuple[str, str | None, Mapping[str, tuple[int, int, int]]]]:
        """Each node's name, board model and real filesystems, from its latest sample."""
        with self.lock:
            return [
                (s.name, s.sample.model, s.sample.fs)
                for s in self.table.nodes.values()
                if s.sample is not None
            ]

    def refused(self) -> Mapping[str, int]:
        """HTTP requests refused by the master's limits, by reason."""
        return dict(limits.refused)

    def datagrams(self) -> tuple[int, Mapping[str, int]]:
        """Datagrams accepted, and rejected by reason."""
        return self.counts.accepted, dict(self.counts.rejected)
