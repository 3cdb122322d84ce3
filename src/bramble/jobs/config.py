"""Where the jobs parts find the cluster: scheduler address, TLS files, master URL, database.

Everything comes from the spec; a few environment variables override it so a job driver
started by the master (and tests on loopback) see the same cluster without a spec search:

- ``BRAMBLE_SPEC``: the spec file;
- ``BRAMBLE_SCHEDULER``: the scheduler address, e.g. ``tls://10.42.0.1:8786``;
- ``BRAMBLE_TLS_DIR``: the directory with ``ca.pem`` and the role certificates;
- ``BRAMBLE_MASTER_URL``: the master's HTTP base URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bramble.jobs.tls import TlsPaths, tls_dir_for

if TYPE_CHECKING:
    from bramble.spec import Spec

ENV_SPEC = "BRAMBLE_SPEC"
ENV_SCHEDULER = "BRAMBLE_SCHEDULER"
ENV_TLS_DIR = "BRAMBLE_TLS_DIR"
ENV_MASTER_URL = "BRAMBLE_MASTER_URL"


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """The resolved settings every jobs part needs."""

    spec_path: Path | None
    scheduler: str
    tls: TlsPaths | None
    master_url: str
    jobs_dir: Path
    db_path: Path
    dashboard_url: str


def spec_path_from(explicit: Path | None) -> Path:
    """The spec file: EXPLICIT, then $BRAMBLE_SPEC, then the usual search."""
    from bramble.spec import find_spec_path

    return find_spec_path(explicit)


def config_from_spec(spec: Spec, spec_path: Path | None) -> JobsConfig:
    """Resolve the jobs settings of SPEC (loaded from SPEC_PATH), honouring the env overrides."""
    master_host = str(spec.network.master_address)
    proto = "tls" if spec.jobs.tls else "tcp"
    scheduler = (
        os.environ.get(ENV_SCHEDULER) or f"{proto}://{master_host}:{spec.jobs.scheduler_port}"
    )
    tls: TlsPaths | None = None
    if spec.jobs.tls:
        if os.environ.get(ENV_TLS_DIR):
            tls = TlsPaths(Path(os.environ[ENV_TLS_DIR]))
        elif spec_path is not None:
            tls = TlsPaths(tls_dir_for(spec_path))
        else:
            tls = TlsPaths(Path("/etc/bramble/tls"))
    master_url = os.environ.get(ENV_MASTER_URL) or (
        f"http://{spec.dashboard_bind}:{spec.dashboard.port}"
    )
    db_path = Path(spec.history.path).parent / "jobs.db"
    sched_host = scheduler.split("://", 1)[-1].rsplit(":", 1)[0]
    return JobsConfig(
        spec_path=spec_path,
        scheduler=scheduler,
        tls=tls,
        master_url=master_url.rstrip("/"),
        jobs_dir=Path(spec.jobs.jobs_dir),
        db_path=db_path,
        dashboard_url=f"http://{sched_host}:{spec.jobs.dashboard_port}/status",
    )


def load_config(explicit: Path | None = None) -> JobsConfig:
    """Find and load the spec, then resolve the jobs settings."""
    from bramble.spec import load_spec

    path = spec_path_from(explicit)
    return config_from_spec(load_spec(path), path)


def admin_token(spec_path: Path | None) -> str:
    """The admin token from the spec's secrets file (SpecError if missing)."""
    from bramble.spec import load_secrets

    path = spec_path if spec_path is not None else spec_path_from(None)
    return load_secrets(path).admin_token
