"""What every test shares: the `root` and `browser` marks become skips, with the reason, where
they cannot run; and real bramble processes that never outlive their test.

Helpers live in bramble_testing.py.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from bramble_testing import Processes

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
