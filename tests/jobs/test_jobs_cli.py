"""End to end through the CLI: `bramble init`, scheduler, workers, master, agents, then
`bramble run / jobs / logs / cancel / exec / hosts / mpirun` as a user types them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from bramble_testing import JOB_EXAMPLES, free_port, give_to_job_user, stop, wait_port

from bramble.spec import load_secrets

pytestmark = pytest.mark.slow

BRAMBLE = shutil.which("bramble") or "bramble"


@dataclass
class Stack:
    root: Path
    spec: Path
    jobs: Path
    url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRAMBLE_")}
        return subprocess.run(
            [BRAMBLE, *args[:1], "--spec", str(self.spec), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            env=env,
        )


def loopback_spec(root: Path, jobs: Path) -> tuple[str, int, int, int]:
    http, sched, dash, telem, enroll = (free_port() for _ in range(5))
    text = f"""
[network]
subnet = "127.0.0.0/24"
master_address = "127.0.0.1"
dhcp_start = "127.0.0.100"
dhcp_end = "127.0.0.199"

[[nodes]]
name = "node-1"
mac = "02:00:00:00:00:01"

[[nodes]]
name = "node-2"
mac = "02:00:00:00:00:02"

[telemetry]
port = {telem}
interface = "127.0.0.1"
interval = 0.5

[dashboard]
bind = "127.0.0.1"
port = {http}

[enroll]
port = {enroll}

[history]
path = "{root / "var" / "history.db"}"

[jobs]
scheduler_port = {sched}
dashboard_port = {dash}
jobs_dir = "{jobs}"
"""
    (root / "bramble.toml").write_text(text)
    return f"http://127.0.0.1:{http}", sched, http, telem


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    subprocess.run([BRAMBLE, "init", str(root)], check=True, capture_output=True)
    public = Path(tempfile.mkdtemp(prefix="bramble-test-"))  # jobs run as an unprivileged user
    public.chmod(0o755)
    jobs = public / "jobs"
    shutil.copytree(JOB_EXAMPLES, jobs)
    give_to_job_user(jobs)
    url, sched, http, _ = loopback_spec(root, jobs)
    st = Stack(root=root, spec=root / "bramble.toml", jobs=jobs, url=url)
    log = (root / "stack.log").open("ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAMBLE_")}

    def start(*args: str) -> None:
        st.procs.append(
            subprocess.Popen(
                [BRAMBLE, *args[:1], "--spec", str(st.spec), *args[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=env,
            )
        )

    try:
        start("scheduler")
        wait_port(sched)
        for name in ("node-1", "node-2"):
            start("worker", "--name", name, "--host", "127.0.0.1", "--nthreads", "2")
            start("agent", "--node-name", name)
        start("master")
        wait_port(http)
        deadline = time.monotonic() + 30
        while True:
            try:
                nodes = httpx.get(f"{url}/api/nodes", timeout=2).json()
                workers = httpx.get(f"{url}/api/jobs/cluster", timeout=10).json()["workers"]
                if sum(n["status"] == "up" for n in nodes) >= 2 and len(workers) >= 2:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (root / "stack.log").read_text()[-3000:]
            time.sleep(0.3)
        yield st
    finally:
        for proc in reversed(st.procs):
            stop(proc)
        log.close()
        shutil.rmtree(public, ignore_errors=True)


@pytest.mark.parametrize(
    ("file", "args", "expect"),
    [
        ("pi.py", ["400000", "8"], "result: 3.1"),
        ("wordcount.py", [], "check: ok"),
        ("mandelbrot.py", ["160", "120"], "mandelbrot.pgm"),
        ("primes.py", ["1000000", "8"], "result: 78498"),
    ],
)
def test_bramble_run_examples(stack: Stack, file: str, args: list[str], expect: str) -> None:
    done = stack.run("run", "--follow", str(stack.jobs / file), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert expect in done.stdout and "check: ok" in done.stdout
    assert " done (exit 0)" in done.stderr
    job_id = int(done.stderr.split("job ")[1].split()[0])
    record = httpx.get(f"{stack.url}/api/jobs/{job_id}").json()
    assert record["state"] == "done" and record["exit_status"] == 0
    assert record["args"] == args and record["file"] == str(stack.jobs / file)
    assert record["submitter"] == "admin@127.0.0.1"
    listing = stack.run("jobs", "--json")
    assert listing.returncode == 0
    assert job_id in [j["id"] for j in json.loads(listing.stdout)]
    assert "state" in stack.run("jobs").stdout
    logs = stack.run("logs", str(job_id))
    assert expect in logs.stdout


def test_bramble_run_syntax_error_and_cancel(stack: Stack) -> None:
    (stack.jobs / "broken.py").write_text("def main(client):\n    return (1 +\n")
    bad = stack.run("run", "--follow", "broken.py")
    assert bad.returncode == 1 and "SyntaxError" in bad.stderr
    started = stack.run("run", "sleepy.py", "200", "1")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.split()[1]
    time.sleep(2)
    cancelled = stack.run("cancel", job_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    follow = stack.run("logs", "--follow", job_id, timeout=30)
    assert "started 200 tasks" in follow.stdout
    ok = stack.run("run", "--follow", "primes.py", "10000", "2")
    assert ok.returncode == 0 and "result: 1229" in ok.stdout


def test_bramble_exec_one_result_per_node(stack: Stack) -> None:
    out = stack.run("exec", "--", "echo", "same")
    assert out.returncode == 0, out.stderr
    assert "node-1,node-2 (2) exit 0" in out.stdout and out.stdout.count("same") == 1
    failing = stack.run("exec", "--nodes", "node-2", "--", "exit 4")
    assert failing.returncode == 4 and "node-2 (1) exit 4" in failing.stdout
    assert "node-1" not in failing.stdout
    assert httpx.get(f"{stack.url}/api/execs").status_code == 401  # output needs the token
    token = load_secrets(stack.spec).admin_token
    log = httpx.get(f"{stack.url}/api/execs", headers={"Authorization": f"Bearer {token}"}).json()
    assert [e["command"] for e in log[:2]] == ["exit 4", "echo same"]
    assert log[0]["submitter"] == "admin@127.0.0.1"


def test_bramble_exec_without_token_is_refused(stack: Stack) -> None:
    resp = httpx.post(f"{stack.url}/api/exec", json={"command": "id"})
    assert resp.status_code == 401


def test_bramble_hosts_and_mpirun(stack: Stack) -> None:
    mpi = stack.run("hosts", "--format", "mpi")
    assert mpi.returncode == 0 and mpi.stdout.startswith("127.0.0.1 slots=")
    assert "node-1" in stack.run("hosts", "--format", "ansible").stdout
    assert stack.run("hosts", "--format", "dask").stdout.startswith("tls://127.0.0.1:")
    if shutil.which("mpirun") is None:
        pytest.skip("OpenMPI not installed")
    pytest.importorskip("mpi4py")
    ring = stack.run("mpirun", "-n", "3", "--", sys.executable, str(JOB_EXAMPLES / "mpi_ring.py"))
    assert ring.returncode == 0, ring.stdout + ring.stderr
    assert "ring of 3 ranks" in ring.stdout and "check: ok" in ring.stdout


def test_workers_never_run_as_root(stack: Stack) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a worker started as root has a user to drop to")
    out = stack.run("exec", "--", "id -un; id -u")
    assert out.returncode == 0, out.stderr
    assert "bramble" in out.stdout and "\n0\n" not in out.stdout
