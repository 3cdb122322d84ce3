"""Fixtures for the jobs tests: a real Dask cluster on loopback with mutual TLS, example jobs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from bramble_testing import (
    JOB_EXAMPLES,
    LocalCluster,
    free_port,
    give_to_job_user,
    stop,
    wait_port,
)

from bramble.jobs.tls import create_cluster_tls


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Scheduler + workers node-1 and node-2 on 127.0.0.1 with the cluster's TLS."""
    root = tmp_path_factory.mktemp("cluster")
    # the scheduler (cwd: root) runs as the job user and reads the master's revocations there
    root.chmod(0o711)
    tls = create_cluster_tls(root / "tls")
    port = free_port()
    dashboard = f"http://127.0.0.1:{free_port()}/status"
    lc = LocalCluster(
        root=root, tls=tls, scheduler=f"tls://127.0.0.1:{port}", dashboard_url=dashboard
    )
    lc.start("scheduler", "scheduler")
    try:
        wait_port(port)
        lc.start("worker", "node-1")
        lc.start("worker", "node-2")
        lc.wait_workers(2)
        yield lc
    finally:
        for proc in reversed(list(lc.procs.values())):
            stop(proc)


@pytest.fixture()
def jobs_dir(public_tmp: Path) -> Path:
    """A jobs directory holding copies of the example jobs, the job user's (jobs write there)."""
    d = public_tmp / "jobs"
    shutil.copytree(JOB_EXAMPLES, d)
    d.chmod(0o755)
    give_to_job_user(d)
    return d
