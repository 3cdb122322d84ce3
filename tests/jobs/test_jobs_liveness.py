"""bramble's liveness drives the scheduler: a frozen node's worker is removed, then rejoins.

A real TLS Dask cluster on loopback (its own, as one of its workers is frozen): the worker
process of node-b is stopped with SIGSTOP, as a board that hangs says nothing on the wire;
Dask alone keeps handing it tasks until its worker-ttl (minutes). The lab test
(tests/jobs/test_jobs_lab.py) shows the same through the master, with the node's heartbeats.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bramble_testing import LocalCluster, free_port, stop, wait_port
from distributed import wait

from bramble.jobs.dask import client_for
from bramble.jobs.liveness import DaskScheduler, WorkerFollower, workers_of
from bramble.jobs.tls import create_cluster_tls
from bramble.master.views import Change


def _change(node: str, kind: str) -> Change:
    return Change(ts=time.time(), node=node, kind=kind, message=f"{node} {kind}")


def test_a_nodes_workers_are_those_named_after_it() -> None:
    workers = {
        "tls://10.42.0.12:4000": {"name": "node-2"},
        "tls://10.42.0.13:4000": {"name": "node-20"},
        "tls://10.42.0.14:4000": {"name": "node-2"},
    }
    assert workers_of("node-2", workers) == ["tls://10.42.0.12:4000", "tls://10.42.0.14:4000"]
    assert workers_of("node-9", workers) == []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("liveness")
    port = free_port()
    lc = LocalCluster(
        root=root,
        tls=create_cluster_tls(root / "tls"),
        scheduler=f"tls://127.0.0.1:{port}",
        dashboard_url=f"http://127.0.0.1:{free_port()}/status",
    )
    lc.start("scheduler", "scheduler")
    try:
        wait_port(port)
        lc.start("worker", "node-a")
        lc.start("worker", "node-b")
        lc.wait_workers(2)
        yield lc
    finally:
        for proc in reversed(list(lc.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            stop(proc)


@pytest.mark.slow
def test_a_frozen_nodes_worker_is_removed_and_rejoins(cluster: LocalCluster) -> None:
    client = client_for(cluster.config(cluster.root))
    follower = WorkerFollower(DaskScheduler(lambda: client))
    follower.start()
    frozen = cluster.procs["node-b"]
    try:
        os.kill(frozen.pid, signal.SIGSTOP)
        # time.sleep: a function the workers can import (this module they cannot)
        futures = client.map(time.sleep, [0.2] * 20, pure=False)
        time.sleep(1)  # node-b has been handed tasks it will never run
        # The master marks node-b down; its worker leaves the scheduler, its tasks go to node-a.
        follower.changes([_change("node-b", "down")])
        _done, not_done = wait(futures, timeout=60)
        assert not_done == set(), "tasks still on the frozen worker"
        assert client.gather(futures) == [None] * 20
        names = {w["name"] for w in client.scheduler_info()["workers"].values()}
        assert names == {"node-a"}
        assert follower.removed == 1
        # up and stale changes leave the scheduler alone
        follower.changes([_change("node-a", "stale")])
        # Back from its hang, node-b's worker finds itself removed and ends; its service
        # manager (systemd's Restart=always, the lab's supervisor) starts it again and it
        # registers anew.
        os.kill(frozen.pid, signal.SIGCONT)
        frozen.wait(60)
        cluster.start("worker", "node-b")
        client.wait_for_workers(2, timeout=60)
        assert follower.remove_workers_of("node-c") == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen.pid, signal.SIGCONT)
        follower.close()
        client.close()


def test_an_unreachable_scheduler_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Gone:
        def workers(self) -> dict[str, dict[str, str]]:
            raise OSError("cannot connect to the Dask scheduler at tls://127.0.0.1:9")

        def remove(self, address: str, reason: str) -> str:
            raise AssertionError("not reached")

    follower = WorkerFollower(Gone())
    follower.start()
    follower.changes([_change("node-b", "down")] * 3)
    follower.close()
    warnings = [r.message for r in caplog.records if "liveness" in r.message]
    assert warnings == [
        "liveness: cannot remove node-b's worker: cannot connect to the Dask scheduler at "
        "tls://127.0.0.1:9"
    ]
