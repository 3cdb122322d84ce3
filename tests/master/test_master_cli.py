"""`bramble master` told to listen where it cannot: one line naming the address and the fix."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
from pathlib import Path

from bramble_testing import wait_for, write_spec

from bramble.master.limits import ENOUGH_FILES, few_files
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


def test_a_low_hard_limit_on_open_files_is_said_at_start(tmp_path: Path) -> None:
    # `ulimit -n 1024` in a shell sets the hard limit too: the master cannot raise it, and a
    # few hundred idle connections would keep others out, so it says so and how to fix it.
    spec = write_spec(tmp_path)
    log = tmp_path / "master.log"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    with log.open("wb") as out:
        master = subprocess.Popen(
            [sys.executable, "-m", "bramble", "master", "--spec", str(spec), "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=low_limit,
        )  # fmt: skip
    try:
        wait_for(lambda: "only 1024 files" in log.read_text(), 30, "the warning")
        assert "LimitNOFILE=65536" in log.read_text()
    finally:
        master.terminate()
        master.wait(20)


def test_enough_open_files_are_not_worth_a_word() -> None:
    assert few_files(65536) is None and few_files(ENOUGH_FILES) is None
    assert "only 1024 files" in (few_files(1024) or "")
