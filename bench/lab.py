"""Lab benchmark: `bramble lab up` to every node up and every worker registered, memory, a job.

For each N (default 16, 32, 64) it runs the real `bramble lab up --nodes N` (with the jobs
cluster), polls the master's API until all N nodes are `up` and all N Dask workers are
registered, then runs `examples/jobs/primes.py 1000000` on the master (`bramble lab exec master
-- bramble run --follow`) and reports:
  - up cmd: seconds the `lab up` command took,
  - all up: seconds from starting `lab up` to the last node's first datagram (first_seen),
  - workers: seconds from starting `lab up` to all N workers registered with the scheduler,
  - ns->visible: per node, seconds from its namespace's creation to its first datagram (max, p50),
  - PSS/node: mean proportional set size of a node's processes (init, udhcpc, agent, worker),
    after the job ran; PSS/master: the master namespace's processes,
  - avail/node: the drop of MemAvailable from before `lab up` to after the job, over N
    (everything: processes, the kernel's per-namespace state, logs on tmpfs),
  - idle CPU/worker: a worker's CPU over 10 s with no job, in % of one core,
  - primes: wall seconds of `bramble run --follow` (CLI, API, driver, job) and the job's own
    duration as the master recorded it,
  - stale: how many stale or down events the master recorded (0 expected).
Then `bramble lab down`. Needs root and the lab's system tools.

Run: python bench/lab.py [--nodes 16 32 64] [--prefix bench] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bramble.lab import commands, daemons, topology

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "jobs"


def pss_kib(pid: int) -> int:
    """Proportional set size of PID in KiB (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    found = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else 0


def tree(pid: int) -> list[int]:
    """PID and its descendants."""
    out = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out += tree(int(child))
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def bench(n: int, prefix: str) -> dict[str, float]:
    """One lab of N nodes: its figures."""
    env = {**os.environ, "BRAMBLE_LAB_PREFIX": prefix}
    avail_before = mem_available_kib()
    start = time.time()
    subprocess.run(
        [sys.executable, "-m", "bramble", "lab", "up", "--nodes", str(n), "--port", "0"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    up_returned = time.time()
    lab = commands.load_lab(prefix)
    try:
        deadline = time.monotonic() + 300
        nodes: list[dict[str, object]] = []
        all_up = workers_at = 0.0
        while time.monotonic() < deadline and not (all_up and workers_at):
            try:
                nodes = httpx.get(lab.url + "api/nodes", timeout=5).json()
                cluster = httpx.get(lab.url + "api/jobs/cluster", timeout=5).json()
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            if not all_up and len(nodes) == n and all(nd["status"] == "up" for nd in nodes):
                all_up = max(float(str(nd["first_seen"])) for nd in nodes) - start
            if not workers_at and len(cluster["workers"]) == n:
                workers_at = time.time() - start
            time.sleep(0.05)
        if not (all_up and workers_at):
            raise SystemExit(f"N={n}: not all nodes up and workers registered within 300 s")
        first = {str(nd["name"]): float(str(nd["first_seen"])) for nd in nodes}
        visible = [
            first[p.name] - os.stat(f"/run/netns/{p.netns}").st_mtime for p in lab.plan.nodes
        ]
        run = lab.plan.state / "run"
        workers = [daemons.read_pid(run, f"{p.name}.worker") for p in lab.plan.nodes]
        before = [cpu_seconds(pid) for pid in workers if pid]
        time.sleep(10)
        after = [cpu_seconds(pid) for pid in workers if pid]
        idle_cpu = 100 * statistics.mean(b - a for a, b in zip(before, after, strict=True)) / 10
        share = topology.export_dir(lab.plan.state, lab.spec.shares[0].export)
        shutil.copy(EXAMPLES / "primes.py", share / "primes.py")
        job_start = time.monotonic()
        job = subprocess.run(
            [sys.executable, "-m", "bramble", "lab", "exec", "master", "--", sys.executable,
             "-m", "bramble", "run", "--follow", "/mnt/jobs/primes.py", "1000000"],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        job_wall = time.monotonic() - job_start
        if "78498 primes" not in job.stdout:
            raise SystemExit(f"N={n}: primes job failed: {job.stdout}{job.stderr}")
        record = httpx.get(lab.url + "api/jobs", timeout=5).json()[0]
        job_own = float(record["finished"]) - float(record["started"])
        changes = httpx.get(lab.url + "api/changes?limit=1000", timeout=5).json()
        stale = sum(1 for c in changes if c["kind"] in ("stale", "down"))
        node_pss = []
        for p in lab.plan.nodes:
            names = ("init", "udhcpc", "agent", "worker")
            pids = [daemons.read_pid(run, f"{p.name}.{d}") for d in names]
            node_pss.append(sum(pss_kib(pid) for pid in pids if pid) / 1024)
        master_names = ("master", "scheduler", "dnsmasq", "ganesha", "proxy", "supervisor")
        master_pids = [daemons.read_pid(run, d) for d in master_names]
        master_pss = sum(pss_kib(q) for pid in master_pids if pid for q in tree(pid)) / 1024
        avail_node = (avail_before - mem_available_kib()) / 1024 / n
        return {
            "nodes": n,
            "up_cmd_s": up_returned - start,
            "all_up_s": all_up,
            "workers_s": workers_at,
            "visible_max_s": max(visible),
            "visible_p50_s": statistics.median(visible),
            "pss_node_mib": statistics.mean(node_pss),
            "pss_master_mib": master_pss,
            "avail_node_mib": avail_node,
            "idle_cpu_pct": idle_cpu,
            "primes_wall_s": job_wall,
            "primes_job_s": job_own,
            "stale_events": stale,
            "load1": os.getloadavg()[0],
        }
    finally:
        subprocess.run(
            [sys.executable, "-m", "bramble", "lab", "down"],
            env=env,
            stdout=subprocess.DEVNULL,
            check=False,
        )


def main() -> int:
    """Run the benchmark for each N and print a table (and JSON lines with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/lab.py needs root (network namespaces)", file=sys.stderr)
        return 2
    rows = []
    for n in args.nodes:
        rows.append(bench(n, args.prefix))
        if args.json:
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"{'N':>3} {'up cmd':>7} {'all up':>7} {'workers':>8} {'vis max':>8} {'p50':>6} "
        f"{'PSS/node':>9} {'avail/node':>11} {'PSS/master':>11} {'idle CPU':>9} "
        f"{'primes':>7} {'(job)':>6} {'stale':>5} {'load':>5}"
    )
    for r in rows:
        print(
            f"{r['nodes']:>3.0f} {r['up_cmd_s']:>6.1f}s {r['all_up_s']:>6.1f}s "
            f"{r['workers_s']:>7.1f}s {r['visible_max_s']:>7.2f}s {r['visible_p50_s']:>5.2f}s "
            f"{r['pss_node_mib']:>5.1f} MiB {r['avail_node_mib']:>7.1f} MiB "
            f"{r['pss_master_mib']:>7.0f} MiB {r['idle_cpu_pct']:>8.2f}% "
            f"{r['primes_wall_s']:>6.1f}s {r['primes_job_s']:>5.1f}s {r['stale_events']:>5.0f} "
            f"{r['load1']:>5.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
