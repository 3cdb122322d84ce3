"""Benchmark: bramble's job overhead against a plain Dask client on the same cluster.

Sets up a loopback cluster the way a user does (`bramble init`, `bramble scheduler`, two
`bramble worker` of 2 threads, mutual TLS) and a master serving the jobs API, then times two
jobs, each REPEAT times, interleaved in alternating order:

- ``tiny``: 1,000 tiny tasks (client.map + gather);
- ``cpu``:  a CPU-bound job (40 tasks of a pure-Python loop).

Each job runs two ways:

- plain: ``python plain.py``, the same job code as a plain Dask script (functions in
  ``__main__``) that builds its own `distributed.Client` with the same certificates;
- bramble: ``bramble run --follow benchjob.py KIND``: the CLI submits the job to the master,
  the master's driver subprocess runs it, and the CLI streams the logs until it ends.

Figures: median wall time end to end (process start to exit, both ways) and median in-job
time (printed by the job itself: what the tasks cost under each way of running them).
Overhead = bramble / plain - 1.

    python bench/jobs.py [--repeat 8]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

JOB = """
import time

def inc(x):
    return x + 1

def burn(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s

def main(client, kind):
    t0 = time.perf_counter()
    if kind == "tiny":
        out = client.gather(client.map(inc, range(1000)))
        assert out == list(range(1, 1001))
    else:
        out = client.gather(client.map(burn, [2_000_000] * 40, pure=False))
        assert len(out) == 40
    print(f"injob {time.perf_counter() - t0:.4f}", flush=True)
"""

PLAIN = """
if __name__ == "__main__":
    import sys
    from distributed import Client, Security
    tls = {tls!r}
    sec = Security(tls_ca_file=tls + "/ca.pem", tls_client_cert=tls + "/client.pem",
                   tls_client_key=tls + "/client-key.pem", require_encryption=True)
    with Client({scheduler!r}, security=sec) as client:
        main(client, sys.argv[1])
"""

SPEC = """
[network]
subnet = "127.0.0.0/24"
master_address = "127.0.0.1"
dhcp_start = "127.0.0.100"
dhcp_end = "127.0.0.199"

[dashboard]
bind = "127.0.0.1"
port = {http}

[history]
path = "{root}/var/history.db"

[jobs]
scheduler_port = {sched}
dashboard_port = {dash}
jobs_dir = "{root}/jobs"
"""

INJOB = re.compile(r"injob ([\d.]+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def start_master(spec: Path, log: IO[bytes]) -> tuple[subprocess.Popen[bytes] | None, str]:
    """`bramble master` for SPEC."""
    args = ["bramble", "master", "--spec", str(spec)]
    return subprocess.Popen(args, stdout=log, stderr=log), "bramble master"


def injob(text: str) -> float:
    match = INJOB.search(text)
    if match is None:
        raise SystemExit(f"no timing in the job's output: {text}")
    return float(match.group(1))


def run_plain(root: Path, kind: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    args = [sys.executable, str(root / "plain.py"), kind]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t0, injob(out)


def run_bramble(spec: Path, kind: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    args = ["bramble", "run", "--spec", str(spec), "--follow", "benchjob.py", kind]
    done = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench job failed: {done.stdout}{done.stderr}")
    return wall, injob(done.stdout)


def measure(
    root: Path, spec: Path, repeat: int
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for kind in ("tiny", "cpu"):
        run_plain(root, kind)  # warm caches
        run_bramble(spec, kind)
        for i in range(repeat):
            # Alternate the order and let the cluster settle, so neither way pays for the
            # other's clean-up.
            for way in ("plain", "bramble") if i % 2 == 0 else ("bramble", "plain"):
                time.sleep(0.5)
                run = run_plain(root, kind) if way == "plain" else run_bramble(spec, kind)
                results.setdefault((kind, way), []).append(run)
    return results


def report(results: dict[tuple[str, str], list[tuple[float, float]]]) -> None:
    print(f"{'job':<6} {'way':<8} {'wall s (median)':>16} {'in-job s (median)':>18}")
    for kind in ("tiny", "cpu"):
        med = {}
        for way in ("plain", "bramble"):
            runs = results[(kind, way)]
            med[way] = (
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
            )
            print(f"{kind:<6} {way:<8} {med[way][0]:>16.3f} {med[way][1]:>18.3f}")
        wall = med["bramble"][0] / med["plain"][0] - 1
        inner = med["bramble"][1] / med["plain"][1] - 1
        print(f"{kind:<6} {'overhead':<8} {wall * 100:>15.1f}% {inner * 100:>17.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repeat", type=int, default=8)
    opts = parser.parse_args()
    for key in [k for k in os.environ if k.startswith("BRAMBLE_")]:
        del os.environ[key]

    with tempfile.TemporaryDirectory(prefix="bramble-bench-jobs-") as tmp:
        root = Path(tmp)
        subprocess.run(["bramble", "init", str(root)], check=True, capture_output=True)
        http, sched, dash = free_port(), free_port(), free_port()
        spec = root / "bramble.toml"
        spec.write_text(SPEC.format(http=http, sched=sched, dash=dash, root=root))
        (root / "jobs").mkdir()
        (root / "jobs" / "benchjob.py").write_text(JOB)
        scheduler = f"tls://127.0.0.1:{sched}"
        plain = JOB + PLAIN.format(tls=str(root / "tls"), scheduler=scheduler)
        (root / "plain.py").write_text(plain)
        procs: list[subprocess.Popen[bytes]] = []
        with open(root / "cluster.log", "wb") as log:
            try:
                args = ["bramble", "scheduler", "--spec", str(spec)]
                procs.append(subprocess.Popen(args, stdout=log, stderr=log))
                wait_port(sched)
                for name in ("node-1", "node-2"):
                    args = ["bramble", "worker", "--spec", str(spec), "--name", name]
                    args += ["--nthreads", "2"]
                    procs.append(subprocess.Popen(args, stdout=log, stderr=log))
                master, how = start_master(spec, log)
                if master is not None:
                    procs.append(master)
                wait_port(http)
                time.sleep(3)
                results = measure(root, spec, opts.repeat)
            finally:
                for proc in reversed(procs):
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        report(results)
        print(f"repeat={opts.repeat}, {os.cpu_count()} cores, 2 workers x 2 threads, mutual TLS")
        print(f"master: {how}")


if __name__ == "__main__":
    main()
