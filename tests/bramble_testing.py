"""Test helpers: a real spec on disk, free ports, real bramble processes, polling."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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
    tables: dict[str, str] | None = None,
) -> Path:
    """A loopback spec (random ports) and its secrets in DIRECTORY; returns the spec path.

    TABLES adds lines to the spec's tables: {"telemetry": "allow_unsigned = true"}.
    """
    directory.mkdir(parents=True, exist_ok=True)
    text = local_spec_text(
        nodes,
        free_port(),
        free_port(socket.SOCK_DGRAM),
        directory,
        telemetry=f"interval = {interval}\nstale_after = {stale_after}\ndown_after = {down_after}",
        extra=extra,
    )
    for table, lines in (tables or {}).items():
        text = _set_keys(text, table, lines)
    spec = directory / "bramble.toml"
    spec.write_text(text)
    secrets = directory / "bramble.secrets.toml"
    secrets.write_text(secrets_text())
    secrets.chmod(0o600)
    return spec


def _set_keys(text: str, table: str, lines: str) -> str:
    """TEXT with LINES (`key = value` each) set in [TABLE], replacing keys it already has."""
    header = f"[{table}]\n"
    if header not in text:
        return text + f"\n{header}{lines}\n"
    head, _, rest = text.partition(header)
    end = rest.find("\n[")
    body, tail = (rest, "") if end == -1 else (rest[: end + 1], rest[end + 1 :])
    kept = body.splitlines()
    for line in lines.splitlines():
        key = line.split("=", 1)[0].strip()
        kept = [k for k in kept if k.split("=", 1)[0].strip() != key]
        kept.insert(0, line)
    return head + header + "\n".join(kept) + "\n" + tail


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


def read_status(pid: int, field: str) -> int:
    """A kB figure (VmRSS, VmHWM, ...) from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def sample_body(
    node: str,
    seq: int,
    *,
    boot: int = 1_700_000_000,
    ts: float | None = None,
    interval: float = 1.0,
    **fields: Any,
) -> dict[str, Any]:
    """A well-formed datagram object (before signing) for NODE; FIELDS replace its keys."""
    body: dict[str, Any] = {
        "cpufreq": 1500,
        "cputemp": 45.5,
        "cpuusage": 0.25,
        "loadavg": [0.5, 0.4, 0.3],
        "meminfo": {"MemTotal": 1000, "MemFree": 300, "MemAvailable": 500, "SwapTotal": 0,
                    "SwapFree": 0},
        "v": 1,
        "node": node,
        "boot": boot,
        "seq": seq,
        "ts": time.time() if ts is None else ts,
        "interval": interval,
        "cores": [0.2, 0.3],
        "disk": {"total": 100, "used": 40, "free": 60},
        "net": {"eth0": [1000 * seq, 2000 * seq]},
        "uptime": 100.0 + seq,
    }  # fmt: skip
    body.update(fields)
    return body


class Master:
    """A `bramble master` process on loopback (ephemeral ports), and a way to talk to it."""

    def __init__(
        self, processes: Processes, directory: Path, *, name: str = "master", **spec: Any
    ) -> None:
        from bramble.spec import load_secrets, load_spec

        self.processes = processes
        self.name = name
        self.spec_path = write_spec(directory, **spec)
        self.spec = load_spec(self.spec_path)
        self.secrets = load_secrets(self.spec_path)
        self.base = f"http://127.0.0.1:{self.spec.dashboard.port}"
        self.target = ("127.0.0.1", self.spec.telemetry.port)
        self._socks: dict[str, socket.socket] = {}
        self.start()

    def start(self) -> None:
        """Start the master and wait for its API."""
        self.proc = self.processes.start(self.name, "master", "--spec", str(self.spec_path))
        wait_for(lambda: self.api("/api/stats"), 30, "the master's API")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return self.processes.stop(self.name, sig)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.base + path, params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return dict(self.api("/api/stats"))

    def rejected(self, reason: str) -> int:
        return int(self.stats()["rejected"].get(reason, 0))

    def signed(self, body: dict[str, Any] | str | bytes) -> bytes:
        """BODY (an object, or the exact JSON text or bytes) signed with the cluster's key."""
        from bramble.telemetry.encode import sign

        if isinstance(body, dict):
            body = json.dumps(body, separators=(",", ":"))
        data = body.encode() if isinstance(body, str) else body
        return sign(data, self.secrets.telemetry_key, self.secrets.telemetry_key_id)

    def send(self, data: bytes | dict[str, Any], *, source: str = "127.0.0.1") -> None:
        """Send DATA (bytes as they are, an object signed) from SOURCE (a loopback address)."""
        sock = self._socks.get(source)
        if sock is None:
            sock = self._socks[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((source, 0))
        sock.sendto(data if isinstance(data, bytes) else self.signed(data), self.target)

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()


def let_job_user_run_python(name: str = "bramble") -> None:
    """As root, make sure user NAME exists and can run this Python and bramble.

    Jobs and workers started by root run as that user. Where this interpreter sits under a
    private directory (a Python installed in root's home), the user is given search rights
    on that directory alone, with a POSIX ACL entry naming it: nothing is opened to others.
    """
    import pwd

    from bramble.jobs.account import AccountError, job_account

    if os.geteuid() != 0:
        return
    try:
        job_account(name)
        return
    except AccountError:
        pass
    uid = pwd.getpwnam(name).pw_uid
    for path in {Path(sys.executable).resolve(), Path(__file__).resolve()}:
        for directory in path.parents:
            mode = directory.stat().st_mode
            if not mode & 0o001:
                _grant_search(directory, uid, mode)
    job_account(name)


def _grant_search(directory: Path, uid: int, mode: int) -> None:
    """Add 'user:UID:--x' to DIRECTORY's access ACL (which has no entries but its mode's)."""
    try:
        os.getxattr(directory, "system.posix_acl_access")
    except OSError:
        pass
    else:
        return  # an ACL already: leave it to its owner
    entries = [
        (0x01, (mode >> 6) & 7, 0xFFFFFFFF),  # owner
        (0x02, 1, uid),  # the job user: search only
        (0x04, (mode >> 3) & 7, 0xFFFFFFFF),  # owning group
        (0x10, ((mode >> 3) & 7) | 1, 0xFFFFFFFF),  # mask
        (0x20, mode & 7, 0xFFFFFFFF),  # others
    ]
    raw = (2).to_bytes(4, "little") + b"".join(
        tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + ident.to_bytes(4, "little")
        for tag, perm, ident in entries
    )
    os.setxattr(directory, "system.posix_acl_access", raw)


def give_to_job_user(path: Path, name: str = "bramble") -> None:
    """As root, hand the tree at PATH to user NAME (jobs write their results beside them)."""
    if os.geteuid() != 0:
        return
    for item in [path, *path.rglob("*")]:
        os.chown(item, *_ids(name), follow_symlinks=False)


def _ids(name: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid
