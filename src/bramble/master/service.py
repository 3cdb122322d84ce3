"""The master service: collector, node table, history, event stream and HTTP, on one loop.

Work that blocks (receiving datagrams, writing SQLite) runs in threads of its own; the
asyncio loop runs uvicorn and three small periodic tasks, all owned and cancelled on
shutdown. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from bramble.master.address import check_listen
from bramble.master.collector import Collector, open_socket
from bramble.master.events import Hub
from bramble.master.history import History, HistoryReader, metric_row
from bramble.master.nodes import Change, NodeTable
from bramble.spec import Secrets, Spec

log = logging.getLogger(__name__)
FLUSH_EVERY = 0.1
TICK_EVERY = 0.5
ROLL_UP_EVERY = 60.0
SHUTDOWN_GRACE = 7.0


class _Writer(threading.Thread):
    """Writes history batches off the event loop, and rolls up tiers once a minute."""

    def __init__(self, history: History) -> None:
        super().__init__(name="bramble-history", daemon=True)
        self.history = history
        self.queue: queue.Queue[tuple[list[Any], list[Change]] | None] = queue.Queue(600)
        self.last_roll = 0.0

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                break
            try:
                self.history.write(*item)
                now = time.time()
                if now - self.last_roll >= ROLL_UP_EVERY:
                    self.last_roll = now
                    self.history.roll_up(now)
            except Exception:
                log.exception("history write failed; this batch is lost, the next is tried")
        self.history.close()


class MasterService:
    """Everything the master runs, built from the spec."""

    def __init__(self, spec: Spec, secrets: Secrets | None, db_path: Path) -> None:
        tel = spec.telemetry
        self.spec = spec
        self.lock = threading.Lock()
        self.table = NodeTable(
            stale_after=tel.stale_after,
            down_after=tel.down_after,
            max_nodes=tel.max_nodes,
            default_interval=tel.interval,
        )
        self.history = History(
            db_path,
            raw_hours=spec.history.raw_hours,
            minute_days=spec.history.minute_days,
            hour_days=spec.history.hour_days,
        )
        self.reader = HistoryReader(db_path, self.history.keep)
        self.writer = _Writer(self.history)
        self.recent: deque[dict[str, Any]] = deque(self.reader.changes(100)[::-1], maxlen=100)
        self._pending_changes: list[Change] = []
        self._flushed: dict[str, int] = {}
        self.hub = Hub(self.snapshot)
        keys = {secrets.telemetry_key_id: secrets.telemetry_key} if secrets else {}
        self.collector = Collector(
            open_socket(str(tel.group), tel.port, tel.interface),
            self.table,
            self.lock,
            keys=keys,
            allow_unsigned=tel.allow_unsigned,
            clock_window=tel.clock_window,
            on_changes=self._changes_from_thread,
        )
        self.admin_token = secrets.admin_token if secrets else None

    # --- views -----------------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        """Every node's view."""
        with self.lock:
            return self.table.views(time.time())

    def node(self, name: str) -> dict[str, Any] | None:
        """One node's view, or None."""
        with self.lock:
            return self.table.view(name, time.time())

    def stats(self) -> dict[str, Any]:
        """Datagrams accepted and rejected, the rate, and the node count."""
        return self.collector.stats.as_dict(len(self.table.nodes))

    def snapshot(self) -> dict[str, Any]:
        """What a new event-stream viewer gets first."""
        return {"nodes": self.nodes(), "stats": self.stats(), "changes": list(self.recent)[::-1]}

    # --- the loop's tasks ------------------------------------------------------------------

    def _changes_from_thread(self, changes: list[Change]) -> None:
        with self.lock:
            self._pending_changes.extend(changes)

    def _publish_changes(self, changes: list[Change]) -> None:
        for change in changes:
            data = change.as_dict()
            self.recent.append(data)
            self.hub.publish("change", data)
            if change.kind in ("down", "rebooted", "stale"):
                log.info("%s", change.message)

    async def _flusher(self) -> None:
        """Every 100 ms: changed nodes as one `nodes` event, and pending change events."""
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            now = time.time()
            with self.lock:
                changes, self._pending_changes = self._pending_changes, []
                names = self.table.drain_dirty()
                views = self.table.views(now, names) if names and self.hub.viewers else []
            if changes:
                self._publish_changes(changes)
                self._queue_history([], changes)
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
                self._publish_changes(changes)
                self._queue_history([], changes)
            if now - last_second >= 1.0:
                last_second = now
                self.collector.stats.mark(now)
                self.hub.publish("stats", self.stats())
                self._queue_history(self._history_rows(), [])

    def _history_rows(self) -> list[Any]:
        rows = []
        with self.lock:
            for state in self.table.nodes.values():
                if state.sample is None or self._flushed.get(state.name) == state.seq:
                    continue
                self._flushed[state.name] = state.seq
                rows.append(
                    (
                        state.name,
                        state.last_ts,
                        metric_row(state.sample, state.net_rx, state.net_tx),
                        state.sample.cores,
                    )
                )
        return rows

    def _queue_history(self, rows: list[Any], changes: list[Change]) -> None:
        if not rows and not changes:
            return
        try:
            self.writer.queue.put_nowait((rows, changes))
        except queue.Full:
            log.warning("history writer is behind; dropping %d rows", len(rows))

    async def run(self, bind: str, port: int) -> None:
        """Serve until SIGTERM/SIGINT."""
        import uvicorn

        from bramble.master.api import create_app

        app = create_app(self)
        config = uvicorn.Config(
            app,
            host=bind,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # event streams never end by themselves: give them 2 s, then close them
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)

        def _exit(_signum: int, _frame: object) -> None:
            # uvicorn takes over these signals while it serves and raises them again when
            # it has stopped; before and after that, this handler ends the serve loop.
            server.should_exit = True
            _exit_soon(SHUTDOWN_GRACE)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _exit)
        self.writer.start()
        await self.collector.start()
        tasks = [
            asyncio.create_task(self._flusher(), name="flusher"),
            asyncio.create_task(self._ticker(), name="ticker"),
        ]
        log.info(
            "bramble master: dashboard http://%s:%d/ telemetry %s:%d",
            bind,
            port,
            self.spec.telemetry.group,
            self.spec.telemetry.port,
        )
        try:
            await server.serve()
        finally:
            _exit_soon(SHUTDOWN_GRACE)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.close()
        if not server.started:
            raise OSError(f"could not serve HTTP on {bind}:{port}")

    def close(self) -> None:
        """Stop the threads, flush history, close the store."""
        self.collector.stop()
        self._queue_history(self._history_rows(), [])
        self.writer.queue.put(None)
        self.writer.join(timeout=10)
        self.reader.close()


def run_from_cli(
    spec_path: Path | None, *, bind: str | None, port: int | None, db: Path | None
) -> None:
    """`bramble master`: load the spec and secrets, then serve until stopped."""
    from bramble.errors import BrambleError
    from bramble.spec import find_spec_path, load_secrets, load_spec

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    path = find_spec_path(spec_path)
    spec = load_spec(path)
    secrets = load_secrets(path)
    db_path = db or Path(spec.history.path)
    host, http_port = bind or spec.dashboard_bind, port or spec.dashboard.port
    check_listen(host, http_port, _bind_source(path, spec, bind, port))
    try:
        service = MasterService(spec, secrets, db_path)
    except OSError as exc:
        raise BrambleError(
            f"cannot start the master: {exc} (is another master using port "
            f"{spec.telemetry.port}, or is {db_path.parent} writable?)"
        ) from None
    loop = _new_loop()
    try:
        loop.run_until_complete(service.run(host, http_port))
    except OSError as exc:
        raise BrambleError(f"cannot start the master: {exc}") from None
    finally:
        loop.close()


def _bind_source(path: Path, spec: Spec, bind: str | None, port: int | None) -> str:
    """Where the dashboard's address came from, for an error that says what to change."""
    if bind:
        return "--bind"
    if spec.dashboard.bind:
        return f"dashboard.bind in {path}"
    return f"network.master_address in {path}, as dashboard.bind is empty"


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where installed (much cheaper per viewer), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


_exit_timer: threading.Timer | None = None


def _exit_soon(grace: float) -> None:
    """Once shutdown has begun, make sure the process ends within GRACE seconds.

    The master's own parts close and flush in well under that; a library thread that hangs
    (a Dask client stuck connecting or closing, say) must not keep a stopped master alive.
    """
    global _exit_timer
    if _exit_timer is not None:
        return

    def _exit() -> None:
        logging.shutdown()
        os._exit(0)

    _exit_timer = threading.Timer(grace, _exit)
    _exit_timer.daemon = True
    _exit_timer.start()
