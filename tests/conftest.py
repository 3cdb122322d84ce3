"""What every test shares: the `root` and `browser` marks become skips, with the reason, where
they cannot run; and real bramble processes that never outlive their test.

Helpers live in bramble_testing.py.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bramble_testing import Master, Processes, let_job_user_run_python

CHROMIUM = "/usr/bin/chromium"


@functools.cache
def _cannot_run_as_root() -> str:
    """Why tests marked `root` cannot run here ('' when they can)."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return ""


@functools.cache
def _cannot_run_a_browser() -> str:
    """Why tests marked `browser` cannot run here ('' when they can)."""
    if importlib.util.find_spec("playwright") is None:
        return "needs Playwright (pip install playwright)"
    if not shutil.which(CHROMIUM):
        return "needs chromium (Debian package 'chromium')"
    return ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark, why in (("root", _cannot_run_as_root), ("browser", _cannot_run_a_browser)):
            if item.get_closest_marker(mark) is not None and (reason := why()):
                item.add_marker(pytest.mark.skip(reason=reason))


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
