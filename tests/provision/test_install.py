"""The node's installer (/etc/bramble/bramble-install) when the master does not give it bramble.

It runs as rendered, with the board's interpreter, against real sockets: a port nobody
listens on, and a real master app whose own wheel cannot be made. (Installing for real is
the lab's test: tests/lab/test_lab_install.py.)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from bramble_testing import SECRETS
from fastapi import FastAPI

from bramble.provision.render import render
from bramble.software.api import software_router
from bramble.software.depot import Depot
from bramble.software.own import OwnWheelError, Wheel
from bramble.spec import parse_spec


def _installer(tmp_path: Path) -> Path:
    path = tmp_path / "bramble-install"
    path.write_text(render(parse_spec(""), SECRETS)["node/etc/bramble/bramble-install"])
    return path


def _run(installer: Path, url: str, venv: Path, tries: int = 3) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(installer), "--url", url, "--venv", str(venv)]
    argv += ["--tries", str(tries), "--first-delay", "0.05"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_silent_master_is_retried_with_backoff_saying_why(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}/dist/"
    out = _run(_installer(tmp_path), url, tmp_path / "venv")
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert len(lines) == 3, out.stderr
    for line in lines:
        assert line.startswith(f"bramble-install: the master at {url} did not answer: ")
        assert "Connection refused" in line
    assert "trying again in 0 s (try 1)" in lines[0]
    assert "trying again in 0 s (try 2)" in lines[1]
    assert lines[2].endswith("giving up after 3 tries")
    assert not (tmp_path / "venv").exists()


@pytest.fixture
def master_without_its_wheel() -> Iterator[str]:
    """A real HTTP server with the master's /dist/ routes, whose own wheel cannot be made."""

    def make_own() -> Wheel:
        raise OwnWheelError("pip wheel /srv/bramble failed: no build backend")

    app = FastAPI()
    app.include_router(software_router(Path("/nonexistent"), Depot(Path("/nonexistent"), make_own)))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/dist/"
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_master_without_its_wheel_is_named_in_the_log(
    tmp_path: Path, master_without_its_wheel: str
) -> None:
    out = _run(_installer(tmp_path), master_without_its_wheel, tmp_path / "venv", tries=2)
    assert out.returncode == 1
    first = out.stderr.splitlines()[0]
    assert first.endswith(
        "did not answer: it answered 503: bramble's wheel is not available: "
        "pip wheel /srv/bramble failed: no build backend; trying again in 0 s (try 1)"
    )
