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
