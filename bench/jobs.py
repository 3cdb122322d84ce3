"""Benchmark: bramble's job overhead against a plain Dask client on the same cluster.

Starts a loopback cluster with the cluster's mutual TLS (a scheduler and 2 workers of 2
threads, as `bramble scheduler` / `bramble worker` run them) and a master serving the jobs API,
then times two jobs, each REPEAT times, interleaved in alternating order:

- ``tiny``: 1,000 tiny tasks (client.map + gather);
- ``cpu``:  a CPU-bound job (40 tasks of a pure-Python loop).

Each job runs two ways:

- plain: ``python plain.py`` — the same job code as a plain Dask script (functions in
  ``__main__``) that builds its own `distributed.Client` with the same certificates;
- bramble: the job submitted to the master (``POST /api/jobs`` with the admin token, as
  `bramble run --follow` does), the master's driver subprocess runs it, and the client follows
  the logs until the job is finished.

Figures: median wall time end to end (submit to finished; process start to exit), and median
in-job time (printed by the job itself, so it measures what the tasks cost under each driver).
Overhead = bramble / plain - 1.

    python bench/jobs.py [--repeat 5]
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
import threading
import time
from pathlib import Path

import httpx

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
        out = client.gather(client.map(burn, [1_500_000] * 40, pure=False))
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

SERVER = """
import sys
from pathlib import Path
from bramble.jobs.config import JobsConfig
from bramble.jobs.tls import TlsPaths
role, scheduler, tls_dir, name = sys.argv[1:5]
cfg = JobsConfig(spec_path=None, scheduler=scheduler, tls=TlsPaths(Path(tls_dir)),
                 master_url="", jobs_dir=Path("."), db_path=Path("jobs.db"), dashboard_url="x:0")
if role == "scheduler":
    from bramble.jobs.servers import run_scheduler
    run_scheduler(cfg, host="127.0.0.1", port=int(scheduler.rsplit(":", 1)[1]))
else:
    from bramble.jobs.servers import run_worker
    run_worker(cfg, name=name, host="127.0.0.1", nthreads=2, memory_limit=None)
"""

TOKEN = "bench-token"


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


def start_master(root: Path, scheduler: str, tls: Path) -> tuple[str, object]:
    """Serve the jobs API the master includes (bramble.jobs.api.router) on a free port."""
    import uvicorn
    from fastapi import FastAPI

    from bramble.jobs.api import JobsService, router
    from bramble.jobs.config import JobsConfig
    from bramble.jobs.tls import TlsPaths

    port = free_port()
    config = JobsConfig(
        spec_path=None,
        scheduler=scheduler,
        tls=TlsPaths(tls),
        master_url=f"http://127.0.0.1:{port}",
        jobs_dir=root,
        db_path=root / "jobs.db",
        dashboard_url="x:0",
    )
    app = FastAPI()
    app.include_router(router)
    app.state.jobs = JobsService(config, TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return config.master_url, server


def run_plain(root: Path, kind: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(root / "plain.py"), kind], capture_output=True, text=True, check=True
    ).stdout
    wall = time.perf_counter() - t0
    return wall, float(re.search(r"injob ([\d.]+)", out).group(1))  # type: ignore[union-attr]


def run_bramble(base: str, kind: str) -> tuple[float, float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    t0 = time.perf_counter()
    with httpx.Client(base_url=base, timeout=30) as http:
        job = http.post(
            "/api/jobs", json={"file": "benchjob.py", "args": [kind]}, headers=headers
        ).json()
        after, text = 0, ""
        while True:
            params = {"after": after, "wait": 10}
            view = http.get(f"/api/jobs/{job['id']}/logs", params=params).json()
            text += "".join(c["data"] for c in view["chunks"])
            after = view["next"]
            if view["finished"]:
                break
    wall = time.perf_counter() - t0
    if view["state"] != "done":
        raise SystemExit(f"bench job failed: {text}")
    return wall, float(re.search(r"injob ([\d.]+)", text).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()

    from bramble.jobs.tls import create_cluster_tls

    with tempfile.TemporaryDirectory(prefix="bramble-bench-jobs-") as tmp:
        root = Path(tmp)
        tls = create_cluster_tls(root / "tls").directory
        port = free_port()
        scheduler = f"tls://127.0.0.1:{port}"
        (root / "benchjob.py").write_text(JOB)
        (root / "plain.py").write_text(JOB + PLAIN.format(tls=str(tls), scheduler=scheduler))
        procs = []
        log = open(root / "cluster.log", "wb")  # noqa: SIM115
        for role, name in (("scheduler", "s"), ("worker", "node-1"), ("worker", "node-2")):
            args = [sys.executable, "-c", SERVER, role, scheduler, str(tls), name]
            procs.append(subprocess.Popen(args, stdout=log, stderr=log, cwd=root))
            if role == "scheduler":
                wait_port(port)
        try:
            base, _server = start_master(root, scheduler, tls)
            time.sleep(2)
            results: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for kind in ("tiny", "cpu"):
                run_plain(root, kind)  # warm up caches
                for i in range(opts.repeat):
                    # Alternate the order and let the cluster settle, so neither way pays
                    # for the other's clean-up.
                    for path in ("plain", "bramble") if i % 2 == 0 else ("bramble", "plain"):
                        time.sleep(0.5)
                        runs = results.setdefault((kind, path), [])
                        runs.append(
                            run_plain(root, kind) if path == "plain" else run_bramble(base, kind)
                        )
            print(f"{'job':<6} {'path':<8} {'wall s (median)':>16} {'in-job s (median)':>18}")
            for kind in ("tiny", "cpu"):
                med = {}
                for path in ("plain", "bramble"):
                    runs = results[(kind, path)]
                    wall = statistics.median(r[0] for r in runs)
                    inj = statistics.median(r[1] for r in runs)
                    med[path] = (wall, inj)
                    print(f"{kind:<6} {path:<8} {wall:>16.3f} {inj:>18.3f}")
                ow = med["bramble"][0] / med["plain"][0] - 1
                oi = med["bramble"][1] / med["plain"][1] - 1
                print(f"{kind:<6} overhead {ow * 100:>15.1f}% {oi * 100:>17.1f}%")
            print(f"repeat={opts.repeat}, cores={os.cpu_count()}, 2 workers x 2 threads, TLS")
        finally:
            for p in reversed(procs):
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
