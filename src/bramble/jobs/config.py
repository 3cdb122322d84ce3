"""Where the jobs parts find the cluster: scheduler address, TLS files, master URL, database.

Everything comes from the cluster's spec; a few environment variables override it so a job
driver started by the master (and tests on loopback) see the same cluster without a spec search:

- ``BRAMBLE_SPEC``: the spec file;
- ``BRAMBLE_SCHEDULER``: the scheduler address, e.g. ``tls://10.42.0.1:8786``;
- ``BRAMBLE_TLS_DIR``: the directory with ``ca.pem`` and the role certificates;
- ``BRAMBLE_MASTER_URL``: the master's HTTP base URL;
- ``BRAMBLE_DASK_DASHBOARD_URL``: the link to Dask's dashboard the jobs panel shows, where its
  viewers reach the scheduler by another address than the cluster's (the lab's host).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bramble.jobs.gate import REVOKED_FILE
from bramble.jobs.tls import TlsPaths

if TYPE_CHECKING:
    from bramble.cluster import Cluster

ENV_SCHEDULER = "BRAMBLE_SCHEDULER"
ENV_TLS_DIR = "BRAMBLE_TLS_DIR"
ENV_MASTER_URL = "BRAMBLE_MASTER_URL"
ENV_DASK_DASHBOARD = "BRAMBLE_DASK_DASHBOARD_URL"


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """The resolved settings every jobs part needs."""

    spec_path: Path | None
    scheduler: str
    tls: TlsPaths | None
    master_url: str
    jobs_dir: Path
    db_path: Path
    dashboard_url: str  # Dask's dashboard, where the master reaches it
    dashboard_link: str = ""  # the same for the dashboard's viewers, when it differs

    @property
    def revoked_path(self) -> Path:
        """The revoked certificates' serials the master writes (beside the history)."""
        return self.db_path.with_name(REVOKED_FILE)


def jobs_config(cluster: Cluster) -> JobsConfig:
    """Resolve the jobs settings of CLUSTER, honouring the environment's overrides."""
    spec = cluster.spec
    master_host = str(spec.network.master_address)
    proto = "tls" if spec.jobs.tls else "tcp"
    scheduler = (
        os.environ.get(ENV_SCHEDULER) or f"{proto}://{master_host}:{spec.jobs.scheduler_port}"
    )
    tls: TlsPaths | None = None
    if spec.jobs.tls:
        if os.environ.get(ENV_TLS_DIR):
            tls = TlsPaths(Path(os.environ[ENV_TLS_DIR]))
        else:
            tls = cluster.tls
    master_url = os.environ.get(ENV_MASTER_URL) or cluster.master_url
    db_path = Path(spec.history.path).parent / "jobs.db"
    sched_host = scheduler.split("://", 1)[-1].rsplit(":", 1)[0]
    return JobsConfig(
        spec_path=cluster.path,
        scheduler=scheduler,
        tls=tls,
        master_url=master_url.rstrip("/"),
        jobs_dir=Path(spec.jobs.jobs_dir),
        db_path=db_path,
        dashboard_url=f"http://{sched_host}:{spec.jobs.dashboard_port}/status",
        dashboard_link=os.environ.get(ENV_DASK_DASHBOARD, ""),
    )
