"""bramble's liveness drives the Dask scheduler: a node down on the master loses its worker.

A board that hangs or loses power says nothing on the wire: its worker's connections stay
open, and the scheduler keeps handing it tasks until its own timeout (`worker-ttl`, minutes).
The master knows first (the node is `down` after `down_after` missed heartbeats), so it
removes the node's worker from the scheduler at once: the tasks it held are rescheduled on
the other workers, and results only it held are recomputed. If the node comes back (it was
only frozen, or its cable was out), its worker finds itself removed and ends; its service
manager (systemd's `Restart=always` on a board, the supervisor in the lab) starts it again
and it registers anew, as after a reboot.

The scheduler calls run in a thread of their own: a slow or absent scheduler never holds up
the master's event loop, and a burst of changes is handled in order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
WARN_EVERY = 60.0  # seconds between repeated warnings about an unreachable scheduler


class NodeChange(Protocol):
    """What this module needs of a master change: the node and what happened to it."""

    @property
    def node(self) -> str: ...

    @property
    def kind(self) -> str: ...


def workers_of(node: str, workers: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The addresses of the workers of NODE in a scheduler's `workers` info.

    A node's worker is named after its host name (`bramble worker`'s default, and the lab's),
    as the node's heartbeats are.
    """
    return sorted(addr for addr, info in workers.items() if str(info.get("name")) == node)


class Scheduler(Protocol):
    """The two scheduler calls this needs (a `distributed.Client` gives both)."""

    def workers(self) -> Mapping[str, Mapping[str, Any]]: ...

    def remove(self, address: str, reason: str) -> str: ...


class DaskScheduler:
    """The calls, through the master's own Dask client (made by CLIENT on each use)."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client

    def workers(self) -> Mapping[str, Mapping[str, Any]]:
        info: dict[str, Any] = self._client().scheduler_info(n_workers=-1)
        workers: Mapping[str, Mapping[str, Any]] = info.get("workers", {})
        return workers

    def remove(self, address: str, reason: str) -> str:
        client = self._client()
        # The scheduler's own `unregister` (what a worker that leaves calls): its tasks go
        # back to the others at once. No close message: a hung worker would not read it.
        result = client.sync(
            client.scheduler.unregister, address=address, stimulus_id=reason, close=False
        )
        return str(result)


class WorkerFollower:
    """Removes the Dask worker of every node the master marks `down`."""

    def __init__(self, scheduler: Scheduler, *, clock: Callable[[], float] = time.time) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.removed = 0  # workers removed, for /api/stats and tests
        self._queue: queue.Queue[str | None] = queue.Queue(QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._run, name="bramble-liveness", daemon=True)
        self._last_warning = 0.0
        self._started = False

    def start(self) -> None:
        """Start the thread that talks to the scheduler."""
        if not self._started:
            self._started = True
            self._thread.start()

    def changes(self, changes: Iterable[NodeChange]) -> None:
        """Take the master's CHANGES (from any thread; never blocks)."""
        for change in changes:
            if change.kind not in ("down", "revoked"):  # a revoked node's worker goes too
                continue
            try:
                self._queue.put_nowait(change.node)
            except queue.Full:
                log.warning("liveness: too many nodes down at once; %s left to Dask", change.node)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (what is queued is dropped)."""
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)

    def remove_workers_of(self, node: str) -> list[str]:
        """Remove NODE's workers from the scheduler now; the addresses removed."""
        removed = []
        for address in workers_of(node, self.scheduler.workers()):
            reason = f"bramble-node-down-{node}-{self.clock():.3f}"
            if self.scheduler.remove(address, reason) == "OK":
                removed.append(address)
        if removed:
            self.removed += len(removed)
            log.info("%s is down: its worker %s left the scheduler", node, ", ".join(removed))
        return removed

    def _run(self) -> None:
        while (node := self._queue.get()) is not None:
            try:
                self.remove_workers_of(node)
            except Exception as exc:  # no scheduler, TLS, a closed client: say so, carry on
                now = time.monotonic()
                if now - self._last_warning >= WARN_EVERY:
                    self._last_warning = now
                    log.warning("liveness: cannot remove %s's worker: %s", node, exc)
