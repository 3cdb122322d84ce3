"""`bramble top` in a pseudo-terminal against a real master and agents; SSE parsing and render."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pexpect
import pytest
from bramble_testing import Processes, api, free_port, wait_for, write_spec
from rich.console import Console

from bramble.client.top import TopState, parse_sse, render
from bramble.spec import load_spec


def test_parse_sse_events_comments_and_multiline_data() -> None:
    lines = ["retry: 2000", "", "event: snapshot", 'data: {"a":', "data: 1}", "", ": ping", ""]
    lines += ["event: stats", 'data: {"rate": 3}', ""]
    assert list(parse_sse(lines)) == [("snapshot", '{"a":\n1}'), ("stats", '{"rate": 3}')]


def test_render_marks_down_nodes_and_lost_connection() -> None:
    now = time.time()
    state = TopState()
    node = {"name": "n1", "status": "up", "last_seen": now - 1, "sample": {"cpuusage": 0.5}}
    state.apply("snapshot", {"nodes": [node, {**node, "name": "n2", "status": "down"}]})
    console = Console(width=120, record=True, color_system=None)
    console.print(render(state, "http://m", now))
    text = console.export_text()
    assert "n1" in text and "50.0%" in text and "DOWN" in text and "1 up" in text
    state.connected = False
    console.print(render(state, "http://m", now))
    assert "connection lost" in console.export_text()


def test_render_shows_firing_alerts_per_node() -> None:
    now = time.time()
    state = TopState()
    node = {"name": "n1", "status": "up", "last_seen": now - 1, "sample": {"cpuusage": 0.5}}
    hot = {"fingerprint": "a1", "rule": "temperature_high", "node": "n1",
           "severity": "warning", "state": "firing"}  # fmt: skip
    state.apply("snapshot", {"nodes": [node], "alerts": [hot]})
    console = Console(width=160, record=True, color_system=None)
    console.print(render(state, "http://m", now))
    text = console.export_text()
    assert "1 alert firing" in text and "temperature_high" in text
    state.apply("alert", {**hot, "state": "resolved"})
    console.print(render(state, "http://m", now))
    assert "temperature_high" not in console.export_text()


@pytest.mark.slow
def test_top_in_a_pty_shows_nodes_and_quits_on_q(tmp_path: Path, processes: Processes) -> None:
    spec_path = write_spec(tmp_path / "cluster", nodes=2, interval=0.3)
    spec = load_spec(spec_path)
    base = f"http://127.0.0.1:{spec.dashboard.port}"
    processes.start("master", "master", "--spec", str(spec_path))
    for name in ("node-1", "node-2"):
        processes.start(name, "agent", "--spec", str(spec_path), "--node-name", name)
    wait_for(lambda: len(api(base, "/api/nodes")) == 2, 20, "two nodes")

    env = {**os.environ, "COLUMNS": "120", "LINES": "30", "TERM": "xterm-256color"}
    child = pexpect.spawn(
        sys.executable, ["-m", "bramble", "top", "--spec", str(spec_path)],
        env=env, timeout=20, dimensions=(30, 120),
    )  # fmt: skip
    try:
        child.expect("node-1")
        child.expect("node-2")
        child.expect("up")
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_top_without_a_master_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    child = pexpect.spawn(sys.executable, ["-m", "bramble", "top", "--url", url], timeout=20)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert b"no master answering" in (child.before or b"")
