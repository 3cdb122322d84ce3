"""Lab processes: start detached with a pid file and a log, check, stop.

Every lab process runs inside one of the lab's network namespaces, so `lab down` finds even
those of a crashed lab through `ip netns pids`; the pid files name them for `status` and the
fault verbs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bramble.lab.netns import alive, kill_pids
from bramble.spec import SECRETS_NAME, Spec

log = logging.getLogger(__name__)


def bramble_argv(*args: str) -> list[str]:
    """The command line running `bramble ARGS` with this interpreter."""
    return [sys.executable, "-m", "bramble", *args]


def agent_argv(
    spec: Spec,
    spec_path: Path,
    node: str,
    boot: int,
    key_file: Path | None = None,
    sysfs: Path | None = None,
) -> list[str]:
    """The lean agent's own command line, as `bramble agent --spec SPEC_PATH` would exec it.

    `lab up` has validated the spec already, so it starts the lean process directly: a node
    then costs one small interpreter start rather than the CLI's imports too (with 32 nodes
    booting at once on a small machine, that is most of the wait). The key is read from
    KEY_FILE (a node's own credentials, once it has enrolled), else from the lab's secrets
    file beside the spec. SYSFS, if given, is where it reads the firmware's flags (the lab's
    boards have a Raspberry Pi's, see `lab.board`).
    """
    from bramble.telemetry.agent import lean_argv

    return lean_argv(
        spec,
        node=node,
        key_args=["--secrets", str(key_file or spec_path.parent / SECRETS_NAME)],
        boot=boot,
        sysfs=None if sysfs is None else str(sysfs),
    )


def in_netns(ns: str, argv: Sequence[str]) -> list[str]:
    """ARGV run in the network namespace NS."""
    return ["ip", "netns", "exec", ns, *argv]


def in_node(holder: int, argv: Sequence[str]) -> list[str]:
    """ARGV run in the network, UTS and mount namespaces of a node's first process HOLDER."""
    return ["nsenter", "-t", str(holder), "-n", "-u", "-m", "--", *argv]


def pid_file(run_dir: Path, name: str) -> Path:
    """Where the pid of the process NAME is kept."""
    return run_dir / f"{name}.pid"


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock: the supervisor never acts between a stop's steps."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def start(
    run_dir: Path,
    name: str,
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    supervise: bool = True,
) -> int:
    """Start ARGV detached (own session), logging to RUN_DIR/NAME.log; record and return its pid.

    With SUPERVISE, the lab's supervisor restarts it should it exit before `stop`.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    reap()
    _detached.append(proc)
    _write_atomic(pid_file(run_dir, name), f"{proc.pid}\n")
    if supervise:
        # Wanted only once its pid is recorded: a supervisor scan in between would otherwise
        # see it wanted and not running, and start a second copy.
        _write_atomic(run_dir / f"{name}.argv", json.dumps(list(argv)))
    log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
    return proc.pid


_detached: list[subprocess.Popen[bytes]] = []
"""Daemons this process started: they outlive any caller, and are reaped here if they end."""


def reap() -> int:
    """Collect the exit status of the daemons this process started that have ended; how many
    still run."""
    _detached[:] = [p for p in _detached if p.poll() is None]
    return len(_detached)


def _write_atomic(path: Path, text: str) -> None:
    """Write TEXT to PATH so a reader sees the old content or the new, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_pid(run_dir: Path, name: str) -> int | None:
    """The recorded pid of NAME, if any."""
    try:
        return int(pid_file(run_dir, name).read_text().strip())
    except (OSError, ValueError):
        return None


def running(run_dir: Path, name: str) -> int | None:
    """The pid of NAME if it is running, else None."""
    pid = read_pid(run_dir, name)
    return pid if pid is not None and alive(pid) else None


def stop(run_dir: Path, names: Sequence[str], timeout: float = 3.0) -> None:
    """Stop the processes NAMES (SIGTERM, then SIGKILL after TIMEOUT); forget their pids."""
    for name in names:
        (run_dir / f"{name}.argv").unlink(missing_ok=True)
    pids = [pid for name in names if (pid := running(run_dir, name)) is not None]
    kill_pids(pids, timeout)
    reap()
    for name in names:
        pid_file(run_dir, name).unlink(missing_ok=True)


def wait_for(path: Path, timeout: float, pid: int | None = None) -> bool:
    """Wait until PATH exists (False after TIMEOUT, or at once when process PID has died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if pid is not None and not alive(pid):
            return path.exists()
        time.sleep(0.02)
    return path.exists()


def rss_kib(pid: int) -> int:
    """Resident memory of PID in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
