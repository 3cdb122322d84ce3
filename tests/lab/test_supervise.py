"""The lab supervisor against real processes: it never starts a second copy of a daemon."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from bramble.lab import daemons, netns, supervise


def _processes_named(run: Path, marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and netns.alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def test_a_daemon_being_started_is_never_started_twice(tmp_path: Path) -> None:
    # The supervisor scans while `lab up` starts daemons (the workers start after it): a scan
    # that sees a daemon wanted but not yet recorded must not start a second copy.
    run = tmp_path / "run"
    marker = f"bramble-test-{tmp_path.name}"
    stop = threading.Event()
    restarted: list[str] = []

    def scanning() -> None:
        last: dict[str, float] = {}
        while not stop.is_set():
            restarted.extend(supervise.scan(run, last, now=1e9 + len(restarted)))

    names = [f"d{i}" for i in range(60)]
    scanner = threading.Thread(target=scanning)
    scanner.start()
    try:
        for name in names:
            daemons.start(run, name, ["sh", "-c", "sleep 60; true", marker])
    finally:
        stop.set()
        scanner.join()
        pids = _processes_named(run, marker)
        for pid in pids:  # each is its own session's leader: take its sleep along
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while daemons.reap() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert restarted == []
    assert len(pids) == len(names)
