"""Shared fixtures (helpers live in bramble_testing.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bramble_testing import Master, Processes, let_job_user_run_python


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def start_master(processes: Processes, tmp_path: Path) -> Iterator[Callable[..., Master]]:
    """Start a loopback `bramble master` (write_spec's keywords shape its spec)."""
    started: list[Master] = []

    def start(**spec: Any) -> Master:
        n = len(started)
        master = Master(processes, tmp_path / f"cluster-{n}", name=f"master-{n}", **spec)
        started.append(master)
        return master

    try:
        yield start
    finally:
        for master in started:
            master.close()


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A scratch directory every user may read (jobs run as an unprivileged user)."""
    path = Path(tempfile.mkdtemp(prefix="bramble-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _job_user() -> None:
    """Jobs and workers started as root run as the unprivileged user `bramble`."""
    let_job_user_run_python()
