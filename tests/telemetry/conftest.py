"""Fixtures for the telemetry tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from bramble_testing import random_port, write_init_spec


@pytest.fixture
def spec_dir(tmp_path: Path) -> tuple[Path, int]:
    """A spec file on a random loopback telemetry port; returns (spec path, port)."""
    port = random_port()
    return write_init_spec(tmp_path, port=port), port
