"""The Dask scheduler (on the master) and worker (one per node), with the cluster's TLS.

`bramble scheduler` and `bramble worker` run these in the foreground; systemd units and the
lab start them. A worker is named after its node, runs one thread per core and may use the
node's RAM (Dask pauses and spills near the limit). SIGTERM and SIGINT close them cleanly.

A light worker (the lab runs one per node, many on one machine) turns off Dask's task
profiler and checks its event loop and memory every second and the system every two, instead
of every 10 to 500 ms: an idle lab worker measured 0.2 % of a core instead of 3.2 %
(bench/RESULTS.md).

Both run code that jobs send, so neither runs as root: started as root, each reads its TLS
files, then becomes the unprivileged user `bramble` (see `account`) before it listens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from typing import Any

from bramble.jobs.account import drop_privileges, job_account
from bramble.jobs.config import JobsConfig
from bramble.jobs.dask import security_for
from bramble.jobs.gate import Revocations, guard_scheduler
from bramble.jobs.tls import Role

log = logging.getLogger(__name__)

# Dask's settings for a light worker: the diagnostics that wake an idle worker most often.
LIGHT_WORKER_CONFIG: dict[str, object] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


def scheduler_has_bokeh() -> bool:
    """Run on the scheduler (by the master): whether bokeh, which Dask's dashboard pages
    need, is there. Without it the scheduler still answers on its dashboard port."""
    import importlib

    try:  # an optional package (bramble-cluster[dask-dashboard]), imported by name
        importlib.import_module("bokeh")  # already imported where the dashboard is served
    except ImportError:
        return False
    return True


def node_resources() -> tuple[int, int]:
    """This node's (cores, RAM in bytes)."""
    return os.cpu_count() or 1, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


async def _serve(server: Any) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        log.info("%s listening on %s", type(server).__name__, server.address)
        finished = asyncio.ensure_future(server.finished())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({finished, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not finished.done():
            await server.close()
        finished.cancel()


def _unprivileged(config: JobsConfig, role: Role) -> Any:
    """ROLE's Security, its files read first; then this process stops being root, if it was."""
    import distributed  # noqa: F401  # loaded while its files are surely readable

    material = config.tls.material(role) if config.tls is not None else None
    account = job_account()
    if account is not None:
        drop_privileges(account)
        log.info("running as %s (uid %d)", account.name, account.uid)
    return security_for(material, role)


def run_scheduler(config: JobsConfig, *, host: str | None, port: int | None) -> None:
    """Run the Dask scheduler in the foreground until SIGTERM."""
    from distributed import Scheduler

    default_host, _, default_port = config.scheduler.split("://", 1)[-1].rpartition(":")
    protocol = "tls" if config.tls is not None else "tcp"
    dashboard_port = int(config.dashboard_url.rsplit(":", 1)[1].split("/", 1)[0])

    security = _unprivileged(config, "scheduler")

    async def main() -> None:
        scheduler = Scheduler(
            host=host or default_host,
            port=port if port is not None else int(default_port),
            protocol=protocol,
            security=security,
            dashboard_address=f":{dashboard_port}",
        )
        # a node's certificate is a worker's, never a client's; a revoked one is nothing
        guard_scheduler(scheduler, Revocations(config.revoked_path))
        await _serve(scheduler)

    asyncio.run(main())


def run_worker(
    config: JobsConfig,
    *,
    name: str | None,
    host: str | None,
    nthreads: int | None,
    memory_limit: int | None,
    light: bool = False,
) -> None:
    """Run this node's Dask worker in the foreground until SIGTERM (LIGHT: fewer wake-ups)."""
    import dask
    from distributed import Worker

    cores, ram = node_resources()
    protocol = "tls" if config.tls is not None else "tcp"
    if light:
        dask.config.set(LIGHT_WORKER_CONFIG)
    security = _unprivileged(config, "worker")

    async def main() -> None:
        worker = Worker(
            config.scheduler,
            name=name or socket.gethostname(),
            host=host,
            protocol=protocol,
            nthreads=nthreads or cores,
            memory_limit=memory_limit or ram,
            security=security,
            dashboard=False,
        )
        await _serve(worker)

    asyncio.run(main())
