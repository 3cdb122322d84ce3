"""Test helpers, in one module: real specs and secrets on disk, free ports, real bramble
processes and servers, a real Dask cluster, captured /proc files, polling.

Fixtures are in the conftest.py files; they build on these.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bramble.demo import free_port, local_spec_text
from bramble.init import secrets_text
from bramble.jobs.config import JobsConfig
from bramble.jobs.tls import TlsPaths
from bramble.spec import Secrets

__all__ = ["free_port"]  # re-exported: a free loopback port (TCP, or UDP with SOCK_DGRAM)

TESTS = Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"
JOB_EXAMPLES = EXAMPLES / "jobs"

# --- specs and secrets on disk --------------------------------------------------------------


def write_spec(
    directory: Path,
    *,
    nodes: int = 3,
    interval: float = 0.2,
    stale_after: float = 3,
    down_after: float = 8,
    extra: str = "",
    tables: dict[str, str] | None = None,
    tls: bool = False,
) -> Path:
    """A loopback spec (random ports) and its secrets in DIRECTORY; returns the spec path.

    TABLES adds lines to the spec's tables: {"telemetry": "allow_unsigned = true"}. TLS:
    the cluster CA in DIRECTORY/tls, so the master enrolls boards over HTTPS (on a port of
    its own).
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
    tables = dict(tables or {})
    if tls:
        from bramble.jobs.tls import create_cluster_tls

        create_cluster_tls(directory / "tls", cluster="test")
        tables["enroll"] = f"port = {free_port()}\n" + tables.get("enroll", "")
    for table, lines in tables.items():
        text = set_keys(text, table, lines)
    spec = directory / "bramble.toml"
    spec.write_text(text)
    secrets = directory / "bramble.secrets.toml"
    secrets.write_text(secrets_text())
    secrets.chmod(0o600)
    return spec


def set_keys(text: str, table: str, lines: str) -> str:
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


KEY = bytes.fromhex("5f" * 32)
"""The telemetry key of `write_init_spec`'s secrets."""


def write_init_spec(directory: Path, *, port: int, interval: float = 0.05) -> Path:
    """`bramble init`'s spec, sending on loopback to PORT every INTERVAL, and its secrets
    (telemetry key KEY); returns the spec path."""
    from bramble.init import spec_text

    text = spec_text()
    text = re.sub(r"(?m)^port = 6000\b", f"port = {port}", text, count=1)
    text = re.sub(r'(?m)^interface = ""', 'interface = "127.0.0.1"', text, count=1)
    text = re.sub(r"(?m)^interval = 1\.0\b", f"interval = {interval}", text, count=1)
    spec = directory / "bramble.toml"
    spec.write_text(text)
    secrets = directory / "bramble.secrets.toml"
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(
            f'[telemetry]\nkey_id = "k1"\nkey = "{KEY.hex()}"\n\n'
            '[admin]\ntoken = "test-admin-token-0123456789"\n'
        )
    return spec


PROVISION = TESTS / "provision"
SPECS = PROVISION / "specs"
GOLDEN = PROVISION / "golden"
SECRETS = Secrets(
    telemetry_key_id="k1",
    telemetry_key=bytes(range(32)),
    admin_token="golden-admin-token-not-secret-0123456789",
    join_token="golden-join-token-not-secret-0123456789",
)
"""Fixed secrets, so rendered files can be compared with the golden trees."""
SECRETS_TEXT = (
    '[telemetry]\nkey_id = "k1"\nkey = "' + bytes(range(32)).hex() + '"\n'
    '\n[admin]\ntoken = "golden-admin-token-not-secret-0123456789"\n'
    '\n[join]\ntoken = "golden-join-token-not-secret-0123456789"\n'
)


def spec_files() -> list[Path]:
    """Our own specs, then the example specs (if the examples directory has any)."""
    return sorted(SPECS.glob("*.toml")) + sorted(EXAMPLES.glob("*.toml"))


# --- captured /proc files -------------------------------------------------------------------

FIXTURES = TESTS / "telemetry" / "fixtures"


def fixture_text(machine: str, name: str) -> str:
    """A captured file of MACHINE ('x86_64' or 'raspberrypi')."""
    return (FIXTURES / machine / name).read_text()


def fixture_bytes(machine: str, name: str) -> bytes:
    """A captured file of MACHINE, as the sampler reads it."""
    return (FIXTURES / machine / name).read_bytes()


def proc_tree(machine: str, root: Path) -> Path:
    """A /proc-like directory holding MACHINE's captured files, for the Sampler (and beside
    it, ROOT/sys, the /sys files it has)."""
    proc = root / "proc"
    (proc / "net").mkdir(parents=True)
    for name in ("stat", "meminfo", "loadavg", "uptime"):
        shutil.copy(FIXTURES / machine / name, proc / name)
    shutil.copy(FIXTURES / machine / "net_dev", proc / "net" / "dev")
    # What only some boards have: each where the kernel puts it.
    for name, where in (
        ("vmstat", "vmstat"),
        ("diskstats", "diskstats"),
        ("mountinfo", "self/mountinfo"),
        ("model", "device-tree/model"),
    ):
        if (FIXTURES / machine / name).exists():
            (proc / where).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURES / machine / name, proc / where)
    if (FIXTURES / machine / "sys").is_dir():
        shutil.copytree(FIXTURES / machine / "sys", root / "sys")
    # Processes, as first read (processes/PID/stat; stat.later is the next reading).
    for stat in sorted((FIXTURES / machine).glob("processes/*/stat")):
        (proc / stat.parent.name).mkdir()
        shutil.copy(stat, proc / stat.parent.name / "stat")
    return proc


# --- ports, sockets, polling ----------------------------------------------------------------


def random_port() -> int:
    """A port unlikely to collide with other tests running on this machine."""
    return random.randint(20000, 60000)


GROUP = "224.0.0.251"


def receiver(port: int) -> socket.socket:
    """A socket joined to the telemetry group on 127.0.0.1, as a loopback master listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((GROUP, port))
    membership = socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1")
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.settimeout(10)
    return sock


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Wait until something listens on the loopback TCP PORT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


# --- processes and servers -------------------------------------------------------------------


class Receiver:
    """A real HTTP server on HOST taking webhook POSTs, keeping each body (JSON)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies: list[Any] = []
        self.bodies = bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Processes:
    """Starts `bramble ...` processes and makes sure none outlives the test."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:  # the child has its own copy
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


def finish(proc: subprocess.Popen[Any]) -> None:
    """End PROC if it still runs (SIGKILL), reap it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM PROC, and SIGKILL it if it has not ended 10 s later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
        self.enroll_base = f"https://127.0.0.1:{self.spec.enroll_port}"
        """Where boards enroll (with `tls=True`), its certificate signed by the CA in tls/."""
        self.ca_file = self.spec_path.parent / "tls" / "ca.pem"
        self.target = ("127.0.0.1", self.spec.telemetry.port)
        self._socks: dict[str, socket.socket] = {}
        self._socks_lock = threading.Lock()  # senders in several threads share the sockets
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
        with self._socks_lock:
            sock = self._socks.get(source)
            if sock is None:
                sock = self._socks[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((source, 0))
        sock.sendto(data if isinstance(data, bytes) else self.signed(data), self.target)

    def close(self) -> None:
        with self._socks_lock:
            for sock in self._socks.values():
                sock.close()
            self._socks.clear()


class Sender:
    """A node sending a signed datagram to MASTER every INTERVAL seconds from a thread;
    `temp` is the temperature it reports."""

    def __init__(self, master: Master, name: str, interval: float = 0.2) -> None:
        self.master, self.name, self.interval = master, name, interval
        self.temp = 45.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seq = 0
        while not self.stop.wait(self.interval):
            seq += 1
            body = sample_body(self.name, seq, interval=self.interval, cputemp=self.temp)
            self.master.send(body)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


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


# --- a real Dask cluster on loopback ----------------------------------------------------------

SERVER_CODE = """
import sys
from pathlib import Path
from bramble.jobs.config import JobsConfig
from bramble.jobs.tls import TlsPaths
role, scheduler, tls_dir, name, dashboard_url = sys.argv[1:6]
cfg = JobsConfig(spec_path=None, scheduler=scheduler, tls=TlsPaths(Path(tls_dir)),
                 master_url="http://127.0.0.1:9", jobs_dir=Path("."), db_path=Path("jobs.db"),
                 dashboard_url=dashboard_url)
if role == "scheduler":
    from bramble.jobs.servers import run_scheduler
    run_scheduler(cfg, host="127.0.0.1", port=int(scheduler.rsplit(":", 1)[1]))
else:
    from bramble.jobs.servers import run_worker
    run_worker(cfg, name=name, host="127.0.0.1", nthreads=2, memory_limit=None)
"""


@dataclass
class LocalCluster:
    """A scheduler and named workers as local processes."""

    root: Path
    tls: TlsPaths
    scheduler: str
    dashboard_url: str  # Dask's dashboard on the scheduler (served when bokeh is installed)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def config(self, jobs_dir: Path, master_url: str = "http://127.0.0.1:9") -> JobsConfig:
        return JobsConfig(
            spec_path=None,
            scheduler=self.scheduler,
            tls=self.tls,
            master_url=master_url,
            jobs_dir=jobs_dir,
            db_path=self.root / "jobs.db",
            dashboard_url=self.dashboard_url,
        )

    def start(self, role: str, name: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-c", SERVER_CODE, role, self.scheduler]
        argv += [str(self.tls.directory), name, self.dashboard_url]
        with open(self.root / f"{name}.log", "ab") as log:  # the child has its own copy
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        self.procs[name] = proc
        return proc

    def client(self):  # type: ignore[no-untyped-def]
        from bramble.jobs.dask import client_for

        return client_for(self.config(self.root))

    def wait_workers(self, n: int, timeout: float = 30.0) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=timeout)
