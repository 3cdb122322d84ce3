"""`bramble demo --local`: a master and N agents come up, and SIGTERM leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from bramble_testing import api, free_port, wait_for

pytestmark = [pytest.mark.slow]


def test_demo_brings_up_nodes_and_stops_clean(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "demo.out"
    with out.open("wb") as log:
        args = ["demo", "--local", "--nodes", "3", "--port", str(port)]
        demo = subprocess.Popen(
            [sys.executable, "-m", "bramble", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: [n["status"] for n in api(base, "/api/nodes")] == ["up"] * 3,
            45,
            "three demo nodes up",
        )
        names = sorted(n["name"] for n in api(base, "/api/nodes"))
        assert names == ["node-1", "node-2", "node-3"]
        wait_for(lambda: "nodes up" in out.read_text(), 15, "the demo's status line")
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 4  # the master and three agents
        state = re.search(r"\(log (\S+)/master\.log\)", out.read_text())
        assert state is not None and Path(state.group(1)).is_dir()

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(20) == 0
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == [], f"left running: {alive}"
        assert not Path(state.group(1)).exists(), "temporary spec dir left behind"
        assert "nothing left running" in out.read_text()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


def _as_unprivileged() -> tuple[list[str], str]:
    """How to run the demo without root here: (argv prefix, what that proves).

    As root, through setpriv as `nobody` when that user can run this interpreter (else with
    --local, the path the demo takes without root); as any other user, as that user.
    """
    if os.geteuid() != 0:
        return [], "not root"
    setpriv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    imports = "import bramble.cli, bramble.master.service, distributed"
    probe = subprocess.run([*setpriv, sys.executable, "-c", imports], capture_output=True)
    if probe.returncode == 0:
        return setpriv, "as nobody"
    return [], "--local as root (nobody cannot run this interpreter)"


def test_local_demo_runs_the_example_jobs_without_root(tmp_path: Path) -> None:
    prefix, _how = _as_unprivileged()
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    env = {**os.environ, "HOME": str(home), "BRAMBLE_CACHE_DIR": str(home / "cache")}
    out = tmp_path / "demo.out"
    with out.open("wb") as log:
        demo = subprocess.Popen(
            [*prefix, sys.executable, "-m", "bramble", "demo", "--local", "--nodes", "3",
             "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )  # fmt: skip
    try:
        found = wait_for(
            lambda: re.search(r"export BRAMBLE_SPEC=(\S+)", out.read_text()),
            90,
            "the demo's line on how to run a job",
        )
        assert "3/3 Dask workers" in out.read_text()
        run = subprocess.run(
            [*prefix, sys.executable, "-m", "bramble", "run", "--follow", "pi.py", "200000"],
            env={**env, "BRAMBLE_SPEC": found.group(1)},
            capture_output=True, text=True, timeout=120, cwd=home,
        )  # fmt: skip
        assert "check: ok" in run.stdout, run.stdout + run.stderr
        assert re.search(r"job 1 done \(exit 0\)", run.stderr), run.stderr
        base = f"http://127.0.0.1:{port}"
        # What the dashboard's jobs panel shows: the job, and a worker per node.
        assert [j["state"] for j in api(base, "/api/jobs")] == ["done"]
        cluster = api(base, "/api/jobs/cluster")
        assert cluster["error"] is None
        assert sorted(w["name"] for w in cluster["workers"]) == ["node-1", "node-2", "node-3"]
        children = psutil.Process(demo.pid).children(recursive=True)
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(30) == 0
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == [], f"left running: {alive}"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
