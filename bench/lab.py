"""Lab benchmark: time from `bramble lab up` to every node `up` on the master's API, and memory.

For each N (default 4, 16, 32) it runs the real `bramble lab up --nodes N`, polls the master's
API until all N nodes are `up`, and reports:
  - up->all-up: seconds from starting `lab up` to the last node's first datagram (first_seen),
  - ns->visible: per node, seconds from its namespace's creation to its first datagram (max, p50),
  - memory per node: the summed RSS of the node's processes (init, udhcpc, agent), mean.
Then `bramble lab down`. Needs root and the lab's system tools.

Run: python bench/lab.py [--nodes 4 16 32] [--prefix bench]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import httpx

from bramble.lab import commands, daemons


def bench(n: int, prefix: str) -> dict[str, float]:
    """One lab of N nodes: its figures."""
    env = {**os.environ, "BRAMBLE_LAB_PREFIX": prefix}
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
        deadline = time.monotonic() + 60
        nodes: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            try:
                nodes = httpx.get(lab.url + "api/nodes", timeout=2).json()
            except httpx.HTTPError:
                nodes = []
            if len(nodes) == n and all(node["status"] == "up" for node in nodes):
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"N={n}: not all nodes up within 60 s")
        first = {str(node["name"]): float(str(node["first_seen"])) for node in nodes}
        visible = [
            first[p.name] - os.stat(f"/run/netns/{p.netns}").st_mtime for p in lab.plan.nodes
        ]
        run = lab.plan.state / "run"
        rss = []
        for p in lab.plan.nodes:
            pids = [daemons.read_pid(run, f"{p.name}.{d}") for d in ("init", "udhcpc", "agent")]
            rss.append(sum(daemons.rss_kib(pid) for pid in pids if pid) / 1024)
        return {
            "nodes": n,
            "up_cmd_s": up_returned - start,
            "all_up_s": max(first.values()) - start,
            "visible_max_s": max(visible),
            "visible_p50_s": statistics.median(visible),
            "rss_node_mib": statistics.mean(rss),
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
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/lab.py needs root (network namespaces)", file=sys.stderr)
        return 2
    rows = [bench(n, args.prefix) for n in args.nodes]
    print(
        f"{'N':>4} {'lab up cmd':>11} {'up->all up':>11} {'ns->visible max':>16} "
        f"{'p50':>6} {'RSS/node':>9}"
    )
    for r in rows:
        print(
            f"{r['nodes']:>4.0f} {r['up_cmd_s']:>10.2f}s {r['all_up_s']:>10.2f}s "
            f"{r['visible_max_s']:>15.2f}s {r['visible_p50_s']:>5.2f}s "
            f"{r['rss_node_mib']:>6.1f} MiB"
        )
        if args.json:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
