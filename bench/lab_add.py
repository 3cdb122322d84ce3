"""Lab: power-on of a board that was not there before, to `up` on the master's API and to its
Dask worker registered with the scheduler.

It brings up a lab of N nodes (`bramble lab up --nodes N`, jobs cluster included), then runs
`bramble lab add` COUNT times (each adds one more board of the spec: namespace created and
cabled, the lab's spec extended, the master restarted to read it, DHCP, enrollment with the
board's own key, agent, worker) and reports, per board, seconds from the start of `lab add`
to the node's first datagram (its `first_seen` on the API), to its worker in
`/api/jobs/cluster`, and to a task run on that worker: `bramble exec --nodes NAME -- true` on
the lab's master as soon as the worker is registered, whose own start (the CLI, the Dask
client's TLS connection) is part of that figure and printed beside it; median and worst.
Then `bramble lab down`. Needs root.

    python bench/lab_add.py [--nodes 2] [--count 10] [--prefix benchadd]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import httpx

from bramble.lab import commands


def bramble(*args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "bramble", *args], capture_output=True, text=True, timeout=300
    )
    if run.returncode != 0:
        raise SystemExit(f"bramble {' '.join(args)} failed:\n{run.stdout}{run.stderr}")
    return run.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--prefix", default="benchadd")
    args = parser.parse_args()
    bramble("lab", "up", "--nodes", str(args.nodes), "--prefix", args.prefix, "--port", "0")
    try:
        url = commands.load_lab(args.prefix).url
        up_s, worker_s, task_s = [], [], []
        print(
            f"{'board':>8} {'add cmd s':>10} {'to up s':>8} {'to worker s':>12} "
            f"{'to task s':>10} {'exec cmd s':>11}"
        )
        for i in range(args.count):
            name = f"node-{args.nodes + i + 1}"
            begin = time.time()
            bramble("lab", "add", name, "--prefix", args.prefix)
            took = time.time() - begin
            seen = worker = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (seen is None or worker is None):
                nodes = {n["name"]: n for n in httpx.get(url + "api/nodes", timeout=5).json()}
                if seen is None and nodes.get(name, {}).get("status") == "up":
                    seen = nodes[name]["first_seen"] - begin
                if worker is None:
                    view = httpx.get(url + "api/jobs/cluster", timeout=10).json()
                    if any(w.get("name") == name for w in view.get("workers", [])):
                        worker = time.time() - begin
                time.sleep(0.05)
            assert seen is not None and worker is not None, f"{name} did not come up"
            asked = time.time()
            task_argv = ["bramble", "exec", "--nodes", name, "--timeout", "30", "--", "true"]
            bramble("lab", "exec", "master", "--prefix", args.prefix, "--", *task_argv)
            task = time.time() - begin
            up_s.append(seen)
            worker_s.append(worker)
            task_s.append(task)
            print(
                f"{name:>8} {took:>10.2f} {seen:>8.2f} {worker:>12.2f} {task:>10.2f} "
                f"{time.time() - asked:>11.2f}",
                flush=True,
            )
        print(
            f"to up: median {statistics.median(up_s):.2f} s, worst {max(up_s):.2f} s; "
            f"to worker: median {statistics.median(worker_s):.2f} s, worst {max(worker_s):.2f} s; "
            f"to a task run: median {statistics.median(task_s):.2f} s, worst {max(task_s):.2f} s"
        )
    finally:
        bramble("lab", "down", "--prefix", args.prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
