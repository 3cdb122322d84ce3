"""A 32-node lab runs jobs with no node going stale (root).

32 nodes is where the kernel's default neighbour tables ran out: every node holds an entry for
every other once the Dask workers exchange data, the 1,024th entry overflowed the table, the
agents' heartbeats were dropped (UdpSndbufErrors) and every node went stale while the job hung.
The exchange job below makes every pair of workers talk, as a shuffle does (as primes.py did
when it scattered its 168 base primes as 168 keys to every worker). About a minute on a
two-core machine.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bramble.lab import capacity, commands, daemons, netns, topology

pytestmark = [pytest.mark.root, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the lab needs root (network namespaces)", allow_module_level=True)
if (missing := netns.missing_tool()) is not None:
    pytest.skip(f"lab tool missing: {missing}", allow_module_level=True)

NODES = 32
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobs"
EXCHANGE = """
def piece(i):
    return bytes(1000 + i)


def total(*pieces):
    return sum(len(p) for p in pieces)


def main(client):
    workers = sorted(client.scheduler_info()["workers"])
    pieces = [client.submit(piece, i, workers=[w], pure=False) for i, w in enumerate(workers)]
    # every worker fetches every other worker's piece: all pairs of nodes talk
    sums = [client.submit(total, *pieces, workers=[w], pure=False) for w in workers]
    expected = sum(1000 + i for i in range(len(workers)))
    assert client.gather(sums) == [expected] * len(workers)
    print(f"exchange: {len(workers)} workers, all pairs: ok")
"""


def bramble(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bramble", *args], capture_output=True, text=True, timeout=timeout
    )


def api(lab: topology.Lab, path: str) -> Any:
    return httpx.get(lab.url.rstrip("/") + path, timeout=10).json()


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout} s: {what}")


def udp_send_errors(ns: str) -> int:
    """SndbufErrors of the namespace NS (/proc/net/snmp as seen from inside it)."""
    snmp = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"], capture_output=True, text=True
    ).stdout
    header, values = (line.split() for line in snmp.splitlines() if line.startswith("Udp:"))
    return int(dict(zip(header, values, strict=True))["SndbufErrors"])


def pss_mib(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) / 1024 if found else 0.0


@pytest.fixture(scope="module")
def big() -> Iterator[topology.Lab]:
    prefix = "s" + secrets.token_hex(3)
    try:
        up = bramble("lab", "up", "--nodes", str(NODES), "--prefix", prefix, "--port", "0")
        assert up.returncode == 0, up.stdout + up.stderr
        lab = commands.load_lab(prefix)
        wait(
            lambda: len(api(lab, "/api/jobs/cluster")["workers"]) == NODES,
            180,
            f"{NODES} workers registered",
        )
        share = topology.export_dir(lab.plan.state, lab.spec.shares[0].export)
        shutil.copy(EXAMPLES / "primes.py", share / "primes.py")
        (share / "exchange.py").write_text(EXCHANGE)
        yield lab
    finally:
        down = bramble("lab", "down", "--prefix", prefix)
        assert down.returncode == 0, down.stdout + down.stderr


def test_jobs_on_32_nodes_leave_every_node_up(big: topology.Lab) -> None:
    prefix = big.plan.prefix
    before = {n.name: udp_send_errors(n.netns) for n in big.plan.nodes}
    for job, output in (
        (["/mnt/jobs/exchange.py"], f"exchange: {NODES} workers, all pairs: ok"),
        (["/mnt/jobs/primes.py", "1000000"], "78498 primes below 1000000"),
    ):
        run = bramble(
            "lab", "exec", "master", "--prefix", prefix, "--",
            sys.executable, "-m", "bramble", "run", "--follow", *job,
        )  # fmt: skip
        assert output in run.stdout, run.stdout + run.stderr
        assert re.search(r"job \d+ done \(exit 0\)", run.stderr), run.stderr
    # Heartbeats of the last seconds of the jobs have arrived too.
    time.sleep(2 * big.spec.telemetry.interval)
    changes = api(big, "/api/changes?limit=1000")
    assert [c for c in changes if c["kind"] in ("stale", "down")] == []
    assert {n["status"] for n in api(big, "/api/nodes")} == {"up"}
    after = {n.name: udp_send_errors(n.netns) for n in big.plan.nodes}
    assert after == before, "heartbeats dropped by the kernel (UdpSndbufErrors)"


def test_each_node_takes_no_more_memory_than_the_lab_plans_for(big: topology.Lab) -> None:
    run = big.plan.state / "run"
    for node in big.plan.nodes:
        pids = [daemons.running(run, f"{node.name}.{d}") for d in ("init", "udhcpc", "agent")]
        worker = daemons.running(run, f"{node.name}.worker")
        total = sum(pss_mib(p) for p in [*pids, worker] if p)
        assert worker is not None and total <= capacity.NODE_MIB_JOBS, (node.name, total)


def test_lab_workers_are_light_one_thread_and_a_share_of_the_ram(big: topology.Lab) -> None:
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    workers = api(big, "/api/jobs/cluster")["workers"]
    assert len(workers) == NODES
    for worker in workers:
        assert worker["nthreads"] == 1
        assert worker["memory_limit"] == ram // NODES
    # Light: no task profiler, so an idle worker wakes up rarely (bench/RESULTS.md).
    probe = (
        "from bramble.jobs import connect; import dask; c = connect(); "
        "print(set(c.run(lambda: dask.config.get('distributed.worker.profile.enabled'))"
        ".values()))"
    )
    run = bramble(
        "lab", "exec", "master", "--prefix", big.plan.prefix, "--", sys.executable, "-c", probe
    )
    assert run.stdout.strip() == "{False}", run.stdout + run.stderr
