"""`bramble demo`: a whole cluster on this machine, in one command.

As root with the lab's system tools present, it is a lab cluster in network namespaces.
Otherwise it runs N agents as separate local processes, each with its own node name,
multicasting over loopback to a master, and the jobs cluster: a Dask scheduler and one worker
per node on loopback (no TLS: nothing leaves the machine), with the example jobs in its jobs
directory. It prints the dashboard URL and how to run a job. Ctrl-C or SIGTERM stops
everything; children also die with the demo if it is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import httpx

from bramble.errors import BrambleError
from bramble.init import secrets_text
from bramble.spec import SECRETS_NAME, SPEC_NAME, parse_spec

PR_SET_PDEATHSIG = 1


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_spec_text(
    nodes: int,
    http_port: int,
    telemetry_port: int,
    state: Path,
    *,
    telemetry: str = "interval = 1.0",
    extra: str = "",
    jobs: str = "",
) -> str:
    """A spec for a cluster of local processes talking over loopback.

    TELEMETRY and JOBS are more lines for the [telemetry] and [jobs] tables; EXTRA is
    appended before the nodes.
    """
    lines = [
        # everything on loopback: the master's address (and so the Dask scheduler's) too
        "[network]",
        'subnet = "127.0.0.0/8"',
        'master_address = "127.0.0.1"',
        'dhcp_start = "127.0.1.100"',
        'dhcp_end = "127.0.1.199"',
        "",
        "[telemetry]",
        'interface = "127.0.0.1"',
        f"port = {telemetry_port}",
        telemetry,
        "",
        "[dashboard]",
        'bind = "127.0.0.1"',
        f"port = {http_port}",
        "",
        "[history]",
        f'path = "{state / "history.db"}"',
        "",
        "[jobs]",
        "tls = false",
        jobs,
        "",
        extra,
    ]
    for i in range(1, nodes + 1):
        lines += [
            "[[nodes]]",
            f'name = "node-{i}"',
            f'mac = "02:b7:00:00:{i // 256:02x}:{i % 256:02x}"',
            "",
        ]
    return "\n".join(lines)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # the child has its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "bramble", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 5.0) -> None:
    """SIGTERM every process, wait, then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_up(url: str, count: int, timeout: float) -> int:
    """Wait until COUNT nodes are up on the master at URL; return how many are."""
    deadline = time.monotonic() + timeout
    up = 0
    while time.monotonic() < deadline:
        try:
            nodes = httpx.get(f"{url}/api/nodes", timeout=2).json()
            up = sum(1 for n in nodes if n["status"] == "up")
            if up >= count:
                return up
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    return up


def choose_mode(force_local: bool) -> tuple[str, str]:
    """('lab', '') when a lab cluster can run here, else ('local', the reason why not)."""
    if force_local:
        return "local", "--local given"
    if os.geteuid() != 0:
        return "local", "not root, so no network namespaces"
    try:
        from bramble.lab.commands import lab_available
    except ImportError:
        return "local", "this install has no lab"
    reason = lab_available()
    return ("lab", "") if not reason else ("local", reason)


def run_demo(*, nodes: int, port: int, force_local: bool, jobs: bool = True) -> None:
    """Bring up the demo cluster and keep it running until Ctrl-C or SIGTERM."""
    if not 1 <= nodes <= 256:
        raise BrambleError("--nodes must be between 1 and 256")
    mode, reason = choose_mode(force_local)
    if mode == "lab":
        from bramble.lab.commands import demo as lab_demo

        lab_demo(nodes=nodes, port=port, jobs=jobs)
        return
    print(f"bramble demo: local processes on loopback ({reason})", flush=True)
    run_local(nodes=nodes, port=port, jobs=jobs)


def examples_dir() -> Path | None:
    """The example jobs: ./examples/jobs (a source checkout), else beside the package's tree."""
    for candidate in (
        Path.cwd() / "examples" / "jobs",
        Path(__file__).resolve().parents[2] / "examples" / "jobs",
    ):
        if candidate.is_dir() and any(candidate.glob("*.py")):
            return candidate
    return None


def wait_workers(url: str, count: int, timeout: float) -> int:
    """Wait until COUNT Dask workers are registered, as the master sees them; how many are."""
    deadline = time.monotonic() + timeout
    workers = 0
    while time.monotonic() < deadline:
        try:
            workers = len(httpx.get(f"{url}/api/jobs/cluster", timeout=5).json()["workers"])
            if workers >= count:
                return workers
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.3)
    return workers


def _worker_args(spec_path: Path, name: str, nodes: int) -> list[str]:
    """A demo node's Dask worker: as in the lab, light, one thread, a share of the RAM."""
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return [
        "worker",
        "--spec",
        str(spec_path),
        "--name",
        name,
        "--host",
        "127.0.0.1",
        "--nthreads",
        "1",
        "--memory-limit",
        str(ram // nodes),
        "--light",
    ]


def _give_to_jobs(state: Path, jobs_dir: Path) -> None:
    """As root, jobs run as the user `bramble`: it must reach the jobs directory and write
    there (the secrets beside it stay the owner's alone)."""
    from bramble.jobs.account import job_account

    account = job_account()
    if account is None:
        return
    state.chmod(0o755)
    for path in [jobs_dir, *jobs_dir.iterdir()]:
        os.chown(path, account.uid, account.gid)


def run_local(*, nodes: int, port: int, jobs: bool = True) -> None:
    """The local-process demo: a master, NODES agents and (with JOBS) Dask, on loopback."""
    stopping = False

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bramble-demo-") as tmp:
        state = Path(tmp)
        spec_path = state / SPEC_NAME
        jobs_dir = state / "jobs"
        jobs_lines = "\n".join(
            [
                f"scheduler_port = {free_port()}",
                f"dashboard_port = {free_port()}",
                f'jobs_dir = "{jobs_dir}"',
            ]
        )
        text = local_spec_text(nodes, port, free_port(socket.SOCK_DGRAM), state, jobs=jobs_lines)
        parse_spec(text, str(spec_path))
        spec_path.write_text(text)
        secrets = state / SECRETS_NAME
        secrets.write_text(secrets_text())
        secrets.chmod(0o600)
        url = f"http://127.0.0.1:{port}"
        try:
            procs.append(_start(["master", "--spec", str(spec_path)], state / "master.log"))
            print(f"  master   {url}  (log {state / 'master.log'})", flush=True)
            if jobs:
                jobs_dir.mkdir()
                examples = examples_dir()
                for example in sorted(examples.glob("*.py")) if examples else []:
                    shutil.copy(example, jobs_dir / example.name)
                _give_to_jobs(state, jobs_dir)
                procs.append(_start(["scheduler", "--spec", str(spec_path)], state / "dask.log"))
            from bramble.telemetry import native

            print(f"  agents   {native.prepare()}", flush=True)
            for i in range(1, nodes + 1):
                args = ["agent", "--spec", str(spec_path), "--node-name", f"node-{i}"]
                procs.append(_start(args, state / f"node-{i}.log"))
            print(f"  agents   node-1 .. node-{nodes}", flush=True)
            if jobs:
                for i in range(1, nodes + 1):
                    args = _worker_args(spec_path, f"node-{i}", nodes)
                    procs.append(_start(args, state / f"node-{i}.worker.log"))
            up = wait_up(url, nodes, timeout=30)
            if procs[0].poll() is not None:
                log = (state / "master.log").read_text()[-800:]
                raise BrambleError(f"the master stopped (is port {port} free?):\n{log}")
            print(f"  {up}/{nodes} nodes up", flush=True)
            if jobs:
                workers = wait_workers(url, nodes, timeout=60)
                print(
                    f"  jobs     {workers}/{nodes} Dask workers on loopback, one per node "
                    f"(log {state / 'dask.log'})",
                    flush=True,
                )
            print(f"\nDashboard: {url}/    API docs: {url}/docs", flush=True)
            if jobs:
                print(
                    f"Jobs: the examples are in {jobs_dir}; in another terminal:\n"
                    f"  export BRAMBLE_SPEC={spec_path}\n"
                    "  bramble run --follow pi.py 2000000",
                    flush=True,
                )
            print("Ctrl-C stops the demo.", flush=True)
            while not stopping:
                time.sleep(0.2)
                if procs[0].poll() is not None:
                    raise BrambleError("the master stopped unexpectedly")
        finally:
            print("\nstopping the demo ...", flush=True)
            stop_all(procs)
            for sig, handler in old.items():
                signal.signal(sig, handler)
            print("stopped; nothing left running.", flush=True)
