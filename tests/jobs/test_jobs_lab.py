"""Jobs on a real lab cluster (root): the Dask scheduler on the lab's master, a worker per node.

Every command runs where a user runs it on hardware: on the master (`bramble lab exec master`,
which enters the master's namespace with the shared directory at its mount point), with the
example jobs copied into the master's export as a user copies them into /srv/jobs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from bramble_testing import JOB_EXAMPLES

from bramble.lab import commands, netns, topology
from bramble.spec import load_secrets
from bramble.trust.certs import common_name

pytestmark = [pytest.mark.root, pytest.mark.slow]

if (missing := netns.missing_tool()) is not None:
    pytest.skip(f"lab tool missing: {missing}", allow_module_level=True)

NODES = ("node-1", "node-2", "node-3")
JOB_DONE = re.compile(r"job (\d+) (\w+) \(exit (-?\d+|None)\)")


def bramble(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The real CLI, in the root namespace."""
    return subprocess.run(
        [sys.executable, "-m", "bramble", *args], capture_output=True, text=True, timeout=timeout
    )


@dataclass
class JobsLab:
    prefix: str
    lab: topology.Lab
    share: Path  # the master's export, seen as /mnt/jobs on the master and every node

    def on(self, where: str, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """ARGV run on the master or a node, through `bramble lab exec`."""
        return bramble("lab", "exec", where, "--prefix", self.prefix, "--", *argv, timeout=timeout)

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """`bramble ARGS` on the master."""
        return self.on("master", sys.executable, "-m", "bramble", *args, timeout=timeout)

    def api(self, path: str) -> Any:
        """GET PATH from the lab's master, with the admin token (job output needs it)."""
        token = load_secrets(self.lab.spec_path).admin_token
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(self.lab.url.rstrip("/") + path, headers=headers, timeout=10).json()

    def run_job(self, *args: str) -> tuple[int, str, subprocess.CompletedProcess[str]]:
        """`bramble run --follow ARGS` on the master: the job id, its final state, the run."""
        proc = self.cli("run", "--follow", *args)
        found = JOB_DONE.search(proc.stderr)
        assert found, proc.stdout + proc.stderr
        return int(found.group(1)), found.group(2), proc

    def executing(self, node: str | None = None) -> int:
        """Tasks executing on NODE's worker (on every worker without NODE)."""
        workers = self.api("/api/jobs/cluster")["workers"]
        return sum(w["executing"] for w in workers if node in (None, w["name"]))

    def workers(self) -> list[str]:
        return sorted(w["name"] for w in self.api("/api/jobs/cluster")["workers"])

    def wait(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(scope="module")
def jl() -> Iterator[JobsLab]:
    prefix = "j" + secrets.token_hex(3)
    try:
        up = bramble("lab", "up", "--nodes", "3", "--prefix", prefix, "--port", "0")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Dask scheduler (TLS)" in up.stdout and "Dask workers starting on 3" in up.stdout
        lab = commands.load_lab(prefix)
        share = topology.export_dir(lab.plan.state, lab.spec.shares[0].export)
        for example in JOB_EXAMPLES.glob("*.py"):
            shutil.copy(example, share / example.name)
        running = JobsLab(prefix, lab, share)
        running.wait(lambda: running.workers() == list(NODES), 90, "a worker on every node")
        yield running
    finally:
        down = bramble("lab", "down", "--prefix", prefix)
        assert down.returncode == 0, down.stdout + down.stderr
        assert commands.leftovers(prefix) == []


def test_every_node_runs_a_light_worker_with_a_share_of_the_machine(jl: JobsLab) -> None:
    view = jl.api("/api/jobs/cluster")
    assert view["error"] is None
    assert view["scheduler"] == "tls://10.42.0.1:8786"
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for worker in view["workers"]:
        # The lab's nodes share the host's cores and RAM: one thread and RAM / nodes each.
        assert worker["nthreads"] == 1
        assert worker["memory_limit"] == ram // len(NODES)
        # Each worker listens on its node's own address, over TLS.
        assert re.fullmatch(r"tls://10\.42\.0\.1[1-3]:\d+", worker["address"]), worker
        # ... with its own certificate, made at enrollment: CN = the node's name.
        state = jl.lab.plan.state / "nodes" / worker["name"]
        assert common_name((state / "tls" / "worker.pem").read_text()) == worker["name"]
        pid = commands.daemons.running(jl.lab.plan.state / "run", f"{worker['name']}.worker")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert str(state / "bramble.toml").encode() in cmdline
    # With bokeh (bramble-cluster[dask-dashboard]), Dask's own dashboard, reachable on the
    # cluster LAN and, through the lab's forwarder, where the panel links to: the host.
    pytest.importorskip("bokeh", reason="Dask's dashboard needs bokeh")
    fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).status)"
    on_lan = jl.on("node-1", sys.executable, "-c", fetch, "http://10.42.0.1:8787/status")
    assert on_lan.stdout.strip() == "200", on_lan.stderr
    url = view["dashboard_url"]
    assert url == f"http://127.0.0.1:{jl.lab.dask_port}/status"
    assert httpx.get(url, timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("job", "result"),
    [
        ("pi.py", r"result: 3\.1\d+"),
        ("wordcount.py", r"result: \{'cluster': 1000, 'a': 800, 'small': 400\}"),
        ("mandelbrot.py", r"result: '/mnt/jobs/mandelbrot\.pgm'"),
        ("primes.py", r"result: 78498"),
    ],
)
def test_each_example_job_runs_checks_itself_and_is_recorded(
    jl: JobsLab, job: str, result: str
) -> None:
    job_id, state, proc = jl.run_job(f"/mnt/jobs/{job}")
    assert state == "done" and proc.returncode == 0, proc.stdout + proc.stderr
    assert "check: ok" in proc.stdout
    assert re.search(result, proc.stdout), proc.stdout
    record = jl.api(f"/api/jobs/{job_id}")
    assert record["file"] == f"/mnt/jobs/{job}"
    assert record["state"] == "done" and record["exit_status"] == 0
    assert record["submitter"] == f"admin@{jl.lab.spec.network.master_address}"
    assert record["started"] >= record["submitted"] and record["finished"] >= record["started"]
    logs = jl.api(f"/api/jobs/{job_id}/logs")
    assert "check: ok" in json.dumps(logs)


def test_wordcount_read_the_shared_directory_on_the_nodes(jl: JobsLab) -> None:
    # The job wrote its corpus beside itself on the share; every node sees the same files.
    if not (jl.share / "wordcount-input").exists():  # this test run on its own
        assert jl.run_job("/mnt/jobs/wordcount.py")[1] == "done"
    assert sorted(p.name for p in (jl.share / "wordcount-input").glob("*.txt")) == [
        "bramble.txt",
        "jobs.txt",
        "raspi.txt",
    ]
    for node in NODES:
        proc = jl.on(node, "ls", "/mnt/jobs/wordcount-input")
        assert proc.stdout.split() == ["bramble.txt", "jobs.txt", "raspi.txt"], proc.stderr


def test_a_syntax_error_fails_with_its_traceback_and_harms_nothing(jl: JobsLab) -> None:
    (jl.share / "broken.py").write_text("def main(client):\n    return 1 +\n")
    job_id, state, proc = jl.run_job("/mnt/jobs/broken.py")
    assert state == "failed" and proc.returncode == 1
    record = jl.api(f"/api/jobs/{job_id}")
    assert record["state"] == "failed" and record["exit_status"] == 1
    logs = json.dumps(jl.api(f"/api/jobs/{job_id}/logs"))
    assert "SyntaxError" in logs and "broken.py" in logs
    # The cluster and the next job are untouched.
    assert jl.workers() == list(NODES)
    _, state, proc = jl.run_job("/mnt/jobs/primes.py")
    assert state == "done" and "check: ok" in proc.stdout


def test_cancel_a_long_job(jl: JobsLab) -> None:
    proc = jl.cli("run", "/mnt/jobs/sleepy.py", "200", "1")
    found = re.search(r"job (\d+)", proc.stdout)
    assert proc.returncode == 0 and found, proc.stdout + proc.stderr
    job_id = int(found.group(1))
    jl.wait(lambda: jl.api(f"/api/jobs/{job_id}")["state"] == "running", 60, "job running")
    jl.wait(lambda: jl.executing() > 0, 60, "tasks executing on the workers")
    cancel = jl.cli("cancel", str(job_id))
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    record = jl.api(f"/api/jobs/{job_id}")
    assert record["state"] == "cancelled" and record["finished"] is not None
    # Its tasks leave the workers (the driver's client closed; 1 s tasks drain).
    jl.wait(lambda: jl.executing() == 0, 30, "the cancelled job's tasks gone from the workers")
    assert jl.api(f"/api/jobs/{job_id}")["state"] == "cancelled"


def test_exec_on_every_node_returns_one_result_per_node(jl: JobsLab) -> None:
    proc = jl.cli("exec", "--json", "--", "hostname; echo same")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["node"]: r for r in json.loads(proc.stdout)["results"]}
    assert sorted(results) == list(NODES)
    for node, r in results.items():
        assert r["rc"] == 0 and r["output"].split() == [node, "same"]
    # Identical outputs fold into one block, as clush -b does.
    folded = jl.cli("exec", "--", "echo same")
    assert folded.returncode == 0
    assert "node-1,node-2,node-3 (3) exit 0" in folded.stdout, folded.stdout
    assert folded.stdout.count("same") == 1, folded.stdout


def test_mpirun_runs_the_ring_across_three_lab_nodes(jl: JobsLab) -> None:
    if shutil.which("mpirun") is None:
        pytest.skip("OpenMPI (openmpi-bin) not installed")
    pytest.importorskip("mpi4py")
    spread = ("mpirun", "--netns", "--by-node", "-n", "3", "--")
    hosts = jl.cli(*spread, "hostname", timeout=120)
    assert hosts.returncode == 0, hosts.stdout + hosts.stderr
    assert sorted(hosts.stdout.split()) == list(NODES)
    ring = jl.cli(*spread, sys.executable, "/mnt/jobs/mpi_ring.py", "4", timeout=120)
    assert ring.returncode == 0, ring.stdout + ring.stderr
    assert "ring of 3 ranks" in ring.stdout and "token 12 after 4 laps" in ring.stdout
    assert "check: ok" in ring.stdout


CLIENT_CHECK = """
import dataclasses, sys
from pathlib import Path
from bramble.cluster import find_cluster
from bramble.jobs.config import jobs_config
from bramble.jobs.dask import SchedulerUnreachableError, client_for
from bramble.jobs.tls import create_cluster_tls

config = jobs_config(find_cluster(env=True))
with client_for(config, timeout=10) as client:
    print("cluster certificate:", client.submit(pow, 2, 10).result())
foreign = create_cluster_tls(Path(sys.argv[1]), cluster="stranger")
tries = {
    "foreign CA": dataclasses.replace(config, tls=foreign),
    "no TLS": dataclasses.replace(
        config, tls=None, scheduler=config.scheduler.replace("tls://", "tcp://")
    ),
}
for name, stranger in tries.items():
    try:
        client_for(stranger, timeout=4).close()
        print(name, "connected")
    except SchedulerUnreachableError:
        print(name, "refused")
"""


def test_a_client_without_the_cluster_certificate_cannot_connect(
    jl: JobsLab, tmp_path: Path
) -> None:
    script = tmp_path / "client_check.py"
    script.write_text(CLIENT_CHECK)
    proc = jl.on("node-2", sys.executable, str(script), str(tmp_path / "foreign"), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "cluster certificate: 1024",
        "foreign CA refused",
        "no TLS refused",
    ]


def test_a_node_stopped_mid_job_does_not_stop_the_job(jl: JobsLab) -> None:
    proc = jl.cli("run", "/mnt/jobs/sleepy.py", "60", "0.5")
    found = re.search(r"job (\d+)", proc.stdout)
    assert proc.returncode == 0 and found, proc.stdout + proc.stderr
    job_id = int(found.group(1))
    jl.wait(lambda: jl.executing("node-2") > 0, 60, "node-2 running tasks of the job")
    stop = bramble("lab", "stop", "node-2", "--prefix", jl.prefix)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    jl.wait(lambda: jl.api(f"/api/jobs/{job_id}")["state"] != "running", 120, "the job ended")
    record = jl.api(f"/api/jobs/{job_id}")
    logs = json.dumps(jl.api(f"/api/jobs/{job_id}/logs"))
    assert record["state"] == "done", logs
    assert "check: ok" in logs and "result: 60" in logs
    assert "node-2" not in jl.workers()
    # Powered on again, the node's worker rejoins.
    start = bramble("lab", "start", "node-2", "--prefix", jl.prefix)
    assert start.returncode == 0, start.stdout + start.stderr
    jl.wait(lambda: jl.workers() == list(NODES), 90, "node-2's worker back")


def _hang_then(jl: JobsLab, during: bool) -> None:
    """node-2 hangs (every process stopped, silent) before or while a job runs; the master
    marks it down and removes its worker, so the job ends on the other nodes long before
    Dask's own worker-ttl (5 minutes); thawed, the node's worker registers again."""
    if not during:
        assert bramble("lab", "freeze", "node-2", "--prefix", jl.prefix).returncode == 0
    proc = jl.cli("run", "/mnt/jobs/sleepy.py", "40", "0.5")
    found = re.search(r"job (\d+)", proc.stdout)
    assert proc.returncode == 0 and found, proc.stdout + proc.stderr
    job_id = int(found.group(1))
    try:
        if during:
            jl.wait(lambda: jl.executing("node-2") > 0, 60, "node-2 running tasks of the job")
            assert bramble("lab", "freeze", "node-2", "--prefix", jl.prefix).returncode == 0
        # Dask alone would still hand node-2 tasks after 200 s (bench/hang.py).
        jl.wait(lambda: jl.api(f"/api/jobs/{job_id}")["state"] != "running", 90, "the job ended")
        record = jl.api(f"/api/jobs/{job_id}")
        assert record["state"] == "done", jl.api(f"/api/jobs/{job_id}/logs")
        assert "node-2" not in jl.workers()
        changes = jl.api("/api/changes?limit=20")
        assert any(c["node"] == "node-2" and c["kind"] == "down" for c in changes)
    finally:
        assert bramble("lab", "thaw", "node-2", "--prefix", jl.prefix).returncode == 0
    # Back, node-2's worker finds itself removed and ends; the lab's supervisor (systemd on a
    # board) starts it again and it registers anew.
    jl.wait(lambda: jl.workers() == list(NODES), 120, "node-2's worker back")


def test_a_job_submitted_after_a_node_hangs_ends_on_the_others(jl: JobsLab) -> None:
    _hang_then(jl, during=False)


def test_a_node_hanging_mid_job_does_not_stall_it(jl: JobsLab) -> None:
    _hang_then(jl, during=True)
