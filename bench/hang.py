"""Job completion after a node hangs: bramble (the master removes the down node's worker) vs
Dask alone (`jobs.remove_down_workers = false`: the scheduler waits for its own timeout).

A real lab (`bramble lab up`, N nodes with the jobs cluster); a hang is `bramble lab freeze
node-2` (SIGSTOP every process of the node: silent, connections left open). Two scenarios,
RUNS times each:
  - before: node-2 hangs, then `sleepy.py TASKS SECONDS` is submitted at once;
  - during: the job is submitted, and node-2 hangs once it is running tasks of the job.
The figure is the job's time from submission to done (the master's record), cut at CAP
seconds (then cancelled: "> CAP"). After each run the node is thawed and the bench waits for
it to be up and its worker registered again. The normal time (no hang) is measured first.

Run: sudo python bench/hang.py [--mode both|bramble|dask] [--runs 10] [--cap 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bramble.init import secrets_text
from bramble.lab import commands, topology
from bramble.spec import load_secrets

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "jobs"
HUNG = "node-2"


class Lab:
    """A running lab and the calls the bench makes to it."""

    def __init__(self, prefix: str, nodes: int) -> None:
        self.prefix = prefix
        self.nodes = nodes
        self.lab = commands.load_lab(prefix)
        self.url = self.lab.url.rstrip("/")
        token = load_secrets(self.lab.spec_path).admin_token
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10)
        share = topology.export_dir(self.lab.plan.state, self.lab.spec.shares[0].export)
        shutil.copy(EXAMPLES / "sleepy.py", share / "sleepy.py")

    def get(self, path: str) -> Any:
        return self.http.get(self.url + path).json()

    def lab_cli(self, verb: str, node: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "bramble", "lab", verb, node, "--prefix", self.prefix],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def submit(self, tasks: int, seconds: float) -> int:
        body = {"file": "/mnt/jobs/sleepy.py", "args": [str(tasks), str(seconds)]}
        return int(self.http.post(self.url + "/api/jobs", json=body).json()["id"])

    def finish(self, job: int, cap: float) -> float | None:
        """Seconds from submission to done; None if not done within CAP (then cancelled)."""
        while True:
            record = self.get(f"/api/jobs/{job}")
            if record["state"] == "done":
                return float(record["finished"]) - float(record["submitted"])
            if record["state"] in ("failed", "cancelled"):
                raise SystemExit(f"job {job} {record['state']}: {record}")
            if time.time() - float(record["submitted"]) > cap:
                self.http.post(self.url + f"/api/jobs/{job}/cancel")
                return None
            time.sleep(0.2)

    def executing_on(self, node: str) -> int:
        workers = self.get("/api/jobs/cluster")["workers"]
        return sum(int(w["executing"]) for w in workers if w["name"] == node)

    def healthy(self, timeout: float = 180) -> None:
        """Wait until every node is up and every worker registered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                up = [n for n in self.get("/api/nodes") if n["status"] == "up"]
                workers = self.get("/api/jobs/cluster")["workers"]
                if len(up) == self.nodes and len(workers) == self.nodes:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise SystemExit(f"lab {self.prefix} not healthy within {timeout} s")


def spec_dir(nodes: int, remove: bool) -> Path:
    """A lab spec (the built-in nodes) with jobs.remove_down_workers = REMOVE, and secrets."""
    directory = Path(tempfile.mkdtemp(prefix="bramble-hang-"))
    text = topology.builtin_spec_text(nodes)
    text += f"\n[jobs]\nremove_down_workers = {'true' if remove else 'false'}\n"
    (directory / "bramble.toml").write_text(text)
    secrets = directory / "bramble.secrets.toml"
    secrets.write_text(secrets_text())
    secrets.chmod(0o600)
    return directory


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every run of MODE ('bramble' or 'dask'): the normal time and both scenarios."""
    directory = spec_dir(args.nodes, remove=mode == "bramble")
    prefix = f"{args.prefix}{mode[0]}"
    env = {**os.environ, "BRAMBLE_LAB_PREFIX": prefix}
    spec = str(directory / "bramble.toml")
    subprocess.run(
        [sys.executable, "-m", "bramble", "lab", "up", "--spec", spec, "--port", "0"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        lab = Lab(prefix, args.nodes)
        lab.healthy()
        normal = []
        for _ in range(3):
            took = lab.finish(lab.submit(args.tasks, args.seconds), args.cap)
            normal.append(took if took is not None else float("inf"))
        figures: dict[str, Any] = {"mode": mode, "normal": statistics.median(normal)}
        for scenario in ("before", "during"):
            runs: list[float | None] = []
            for i in range(args.runs):
                if scenario == "before":
                    lab.lab_cli("freeze", HUNG)
                    job = lab.submit(args.tasks, args.seconds)
                else:
                    job = lab.submit(args.tasks, args.seconds)
                    deadline = time.monotonic() + 60
                    while lab.executing_on(HUNG) == 0 and time.monotonic() < deadline:
                        time.sleep(0.05)
                    lab.lab_cli("freeze", HUNG)
                took = lab.finish(job, args.cap)
                runs.append(took)
                lab.lab_cli("thaw", HUNG)
                lab.healthy()
                shown = f"{took:.1f} s" if took is not None else f"> {args.cap:.0f} s"
                print(f"{mode} {scenario} run {i + 1}: {shown}", flush=True)
            figures[scenario] = runs
        return figures
    finally:
        subprocess.run(
            [sys.executable, "-m", "bramble", "lab", "down"],
            env=env,
            stdout=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


def _summary(runs: list[float | None], cap: float) -> tuple[str, str]:
    """Median and worst of RUNS, a run cut at CAP counting as more than CAP."""
    values = sorted(r if r is not None else float("inf") for r in runs)
    median = statistics.median(values)

    def shown(v: float) -> str:
        return f"> {cap:.0f} s" if v == float("inf") else f"{v:.1f} s"

    return shown(median), shown(values[-1])


def main() -> int:
    """Run the chosen modes and print a table (and JSON lines with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["both", "bramble", "dask"], default="both")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cap", type=float, default=200.0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--prefix", default="hang")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/hang.py needs root (network namespaces)", file=sys.stderr)
        return 2
    modes = ["bramble", "dask"] if args.mode == "both" else [args.mode]
    results = [run_mode(mode, args) for mode in modes]
    print(f"\nsleepy.py {args.tasks} {args.seconds} on {args.nodes} nodes, {args.runs} runs each")
    print(f"{'mode':<8} {'normal':>8} {'scenario':<8} {'median':>9} {'worst':>9}")
    for r in results:
        for scenario in ("before", "during"):
            median, worst = _summary(r[scenario], args.cap)
            print(f"{r['mode']:<8} {r['normal']:>6.1f} s {scenario:<8} {median:>9} {worst:>9}")
        if args.json:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
