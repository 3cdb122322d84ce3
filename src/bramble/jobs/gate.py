"""The scheduler's gate: a worker's certificate may serve as a worker, never as a client.

Every node holds a worker certificate (its own since enrollment, OU `bramble worker`; the
shared one of older clusters, CN `bramble-worker`), so anyone with root on a node holds one.
Dask accepts any certificate the cluster CA signed, for anything; the gate refuses, to a
connection whose peer certificate is a worker's, the scheduler's operations that submit work,
run code or change the cluster (`register-client` first of all). Only the master's client
certificate may do those.

`worker_certificate` is pure (the peer certificate as Python's ssl module gives it);
`guard_scheduler` wraps the scheduler's handlers before it starts.

Not covered: the worker's own stream, which Dask gives the same message handlers as a
client's; a worker certificate cannot open a client stream, but a modified worker could send
client messages on its worker stream.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

WORKER_OU = "bramble worker"
SHARED_WORKER_CN = "bramble-worker"
REFUSED_TO_WORKERS = frozenset(
    {
        "register-client",
        "scatter",
        "gather",
        "run_function",
        "broadcast",
        "feed",
        "proxy",
        "terminate",
        "close",
        "restart",
        "restart_workers",
        "retire_workers",
        "rebalance",
        "replicate",
        "retry",
        "set_resources",
        "set_restrictions",
        "register_scheduler_plugin",
        "unregister_scheduler_plugin",
        "register_worker_plugin",
        "unregister_worker_plugin",
        "register_nanny_plugin",
        "unregister_nanny_plugin",
        "start_task_metadata",
        "stop_task_metadata",
        "dump_cluster_state_to_url",
        "benchmark_hardware",
        "get_logs",
        "logs",
        "worker_logs",
    }
)
"""Scheduler operations a worker certificate may not call: they submit work, run code, read
other jobs' data or logs, or change the cluster."""


def worker_certificate(peercert: object) -> bool:
    """Whether PEERCERT (ssl's `getpeercert()` dict) is a node's worker certificate."""
    if not isinstance(peercert, dict):
        return False
    names: dict[str, str] = {}
    for rdn in peercert.get("subject", ()):
        for pair in rdn:
            if isinstance(pair, tuple) and len(pair) == 2:
                names[str(pair[0])] = str(pair[1])
    return (
        names.get("organizationalUnitName") == WORKER_OU
        or names.get("commonName") == SHARED_WORKER_CN
    )


def _guarded(op: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    wants_comm = "comm" in inspect.signature(handler).parameters

    async def guarded(comm: Any, **kwargs: Any) -> Any:
        info = getattr(comm, "extra_info", None) or {}
        if worker_certificate(info.get("peercert")):
            log.warning("refused %s from %s: a worker's certificate", op, comm.peer_address)
            message = f"a worker's certificate may not {op}: only the master's client may"
            if op == "register-client":  # the client waits for this answer: say why, end
                await comm.write([{"op": "stream-start", "error": message}])
                await comm.close()
                return None
            raise PermissionError(message)
        result = handler(comm=comm, **kwargs) if wants_comm else handler(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    return guarded


def guard_scheduler(scheduler: Any) -> None:
    """Refuse REFUSED_TO_WORKERS to worker certificates on SCHEDULER (before it starts)."""
    handlers: dict[str, Callable[..., Any]] = scheduler.handlers
    for op in REFUSED_TO_WORKERS & set(handlers):
        handlers[op] = _guarded(op, handlers[op])
