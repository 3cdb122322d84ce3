"""Test helpers: a real spec on disk, free ports, real bramble processes, polling."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bramble.demo import free_port, local_spec_text
from bramble.init import secrets_text


def write_spec(
    directory: Path,
    *,
    nodes: int = 3,
    interval: float = 0.2,
    stale_after: float = 3,
    down_after: float = 8,
    extra: str = "",
) -> Path:
    """A loopback spec (random ports) and its secrets in DIRECTORY; returns the spec path."""
    directory.mkdir(parents=True, exist_ok=True)
    text = local_spec_text(
        nodes,
        free_port(),
        free_port(socket.SOCK_DGRAM),
        directory,
        telemetry=f"interval = {interval}\nstale_after = {stale_after}\ndown_after = {down_after}",
        extra=extra,
    )
    spec = directory / "bramble.toml"
    spec.write_text(text)
    secrets = directory / "bramble.secrets.toml"
    secrets.write_text(secrets_text())
    secrets.chmod(0o600)
    return spec


class Processes:
    """Starts `bramble ...` processes and makes sure none outlives the test."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "bramble", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(name, timeout=5)


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll CHECK until it returns something truthy; fail the test saying WHAT otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def api(base: str, path: str) -> Any:
    response = httpx.get(base + path, timeout=5)
    response.raise_for_status()
    return response.json()


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """APP served by uvicorn on an ephemeral loopback port, in a thread; yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the test server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
