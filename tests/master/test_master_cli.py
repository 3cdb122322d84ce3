"""`bramble master` told to listen where it cannot: one line naming the address and the fix."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from bramble_testing import write_spec

from bramble.spec import load_spec

NOT_HERE = "192.0.2.1"  # TEST-NET-1: documentation only, never an address of this host


def _master(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bramble", "master", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_an_address_not_on_this_host_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, extra="")
    port = load_spec(spec).dashboard.port
    done = _master("--spec", str(spec), "--bind", NOT_HERE)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: cannot serve the dashboard on {NOT_HERE}:{port}: ")
    assert "not an address of this host (from --bind)" in lines[0]
    assert "127.0.0.1" in lines[0]
    assert not (tmp_path / "history.db").exists(), "nothing should have started"


def test_the_spec_key_that_named_the_address_is_named(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace('bind = "127.0.0.1"', f'bind = "{NOT_HERE}"'))
    done = _master("--spec", str(spec))
    assert done.returncode == 2
    assert f"(from dashboard.bind in {spec})" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _master("--spec", str(spec), "--port", str(port))
    assert done.returncode == 2
    assert f"port {port} is in use" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
