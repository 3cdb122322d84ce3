"""`bramble status` against a real master: where it finds the spec, what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bramble_testing import Processes, api, wait_for, write_spec

from bramble.spec import load_spec


@pytest.mark.slow
def test_status_finds_the_spec_through_bramble_spec_like_the_jobs_commands(
    tmp_path: Path, processes: Processes
) -> None:
    # `bramble lab exec master -- bramble status` sets only $BRAMBLE_SPEC, as for `bramble run`.
    spec_path = write_spec(tmp_path / "cluster", nodes=1, interval=0.3)
    spec = load_spec(spec_path)
    base = f"http://127.0.0.1:{spec.dashboard.port}"
    processes.start("master", "master", "--spec", str(spec_path))
    processes.start("node-1", "agent", "--spec", str(spec_path), "--node-name", "node-1")
    wait_for(lambda: len(api(base, "/api/nodes")) == 1, 20, "a node")
    elsewhere = tmp_path / "elsewhere"  # no bramble.toml here
    elsewhere.mkdir()
    env = {**os.environ, "BRAMBLE_SPEC": str(spec_path), "COLUMNS": "120"}
    status = subprocess.run(
        [sys.executable, "-m", "bramble", "status"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert f"bramble at {base}" in status.stdout and "node-1" in status.stdout
    assert "history: up to 2.0 GiB, not saved yet (every 60 s)" in status.stdout
    # A $BRAMBLE_SPEC naming nothing is one line saying so, exit 2.
    env["BRAMBLE_SPEC"] = str(tmp_path / "missing.toml")
    missing = subprocess.run(
        [sys.executable, "-m", "bramble", "status"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing.toml'}: no such file (named by $BRAMBLE_SPEC) "
        "(unset BRAMBLE_SPEC or point it at a spec)"
    ]
