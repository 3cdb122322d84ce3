"""Fixtures: a real Dask cluster on loopback with mutual TLS (scheduler + 2 worker processes)."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bramble_testing import give_to_job_user

from bramble.jobs.config import JobsConfig
from bramble.jobs.tls import TlsPaths, create_cluster_tls

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobs"

SERVER_CODE = """
import sys
from pathlib import Path
from bramble.jobs.config import JobsConfig
from bramble.jobs.tls import TlsPaths
role, scheduler, tls_dir, name, dashboard_url = sys.argv[1:6]
cfg = JobsConfig(spec_path=None, scheduler=scheduler, tls=TlsPaths(Path(tls_dir)),
                 master_url="http://127.0.0.1:9", jobs_dir=Path("."), db_path=Path("jobs.db"),
                 dashboard_url=dashboard_url)
if role == "scheduler":
    from bramble.jobs.servers import run_scheduler
    run_scheduler(cfg, host="127.0.0.1", port=int(scheduler.rsplit(":", 1)[1]))
else:
    from bramble.jobs.servers import run_worker
    run_worker(cfg, name=name, host="127.0.0.1", nthreads=2, memory_limit=None)
"""


def free_port() -> int:
    """A free TCP port in 20000-60000 on loopback."""
    for _ in range(100):
        port = random.randint(20000, 60000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LocalCluster:
    """A scheduler and named workers as local processes."""

    root: Path
    tls: TlsPaths
    scheduler: str
    dashboard_url: str  # Dask's dashboard on the scheduler (served when bokeh is installed)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def config(self, jobs_dir: Path, master_url: str = "http://127.0.0.1:9") -> JobsConfig:
        return JobsConfig(
            spec_path=None,
            scheduler=self.scheduler,
            tls=self.tls,
            master_url=master_url,
            jobs_dir=jobs_dir,
            db_path=self.root / "jobs.db",
            dashboard_url=self.dashboard_url,
        )

    def start(self, role: str, name: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVER_CODE,
                role,
                self.scheduler,
                str(self.tls.directory),
                name,
                self.dashboard_url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        self.procs[name] = proc
        return proc

    def client(self):  # type: ignore[no-untyped-def]
        from bramble.jobs.connect import client_for

        return client_for(self.config(self.root))

    def wait_workers(self, n: int, timeout: float = 30.0) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=timeout)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Scheduler + workers node-1 and node-2 on 127.0.0.1 with the cluster's TLS."""
    root = tmp_path_factory.mktemp("cluster")
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
    """A jobs directory holding copies of the example jobs, readable by the job user."""
    d = public_tmp / "jobs"
    shutil.copytree(EXAMPLES, d)
    d.chmod(0o755)
    give_to_job_user(d)
    return d
