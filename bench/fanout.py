"""Dashboard fan-out: 1,000 simulated nodes at 1 Hz, 100 event-stream viewers, for 60 s.

A sender process signs one datagram per node per second (spread evenly over the second) with
the cluster key the master uses, stamping each with the time it is sent. Viewer processes hold
100 connections to /api/events and note when each `nodes` event arrives; a node's delay is the
arrival time minus the sample's `ts` (its send time; same machine, same clock). Reported: delay
p50/p99/max over all viewers, the worst viewer's p99, samples delivered per viewer, resyncs, and
the master's CPU and RSS.

    python bench/fanout.py [--nodes 1000] [--viewers 100] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import SAMPLE, cpu_seconds, rss_mib, send_paced, wait_ready, write_local_spec

TS = re.compile(rb'"ts":([0-9.]+)')


def sender(spec_path: Path, nodes: int, seconds: float) -> None:
    """Send one signed datagram per node per second, each stamped with its send time."""
    send_paced(spec_path, nodes, seconds, lambda node: SAMPLE, int(time.time() * 1000))


async def _viewer(host: str, port: int, start: float, until: float, out: dict[str, object]) -> None:
    delays: list[float] = []
    snapshots = 0
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    buffer = b""
    while time.time() < until:
        try:
            data = await asyncio.wait_for(reader.read(1 << 20), until - time.time())
        except TimeoutError:
            break
        if not data:
            break
        now = time.time()
        buffer += data
        *frames, buffer = buffer.split(b"\n\n")
        for f in frames:
            if b"event: nodes" in f and now >= start:
                delays.extend(now - float(t) for t in TS.findall(f))
            elif b"event: snapshot" in f:
                snapshots += 1
    writer.close()
    out["delays"] = delays
    out["snapshots"] = snapshots


def viewers(base_port: int, count: int, start: float, until: float, out_path: Path) -> None:
    """COUNT viewers in one process; delays of what arrives from START to UNTIL to OUT_PATH."""

    async def run() -> list[dict[str, object]]:
        outs: list[dict[str, object]] = [{} for _ in range(count)]
        await asyncio.gather(*(_viewer("127.0.0.1", base_port, start, until, o) for o in outs))
        return outs

    outs = asyncio.run(run())
    result = []
    for o in outs:
        delays = o.get("delays", [])
        assert isinstance(delays, list)
        result.append({"delays": delays, "snapshots": o.get("snapshots", 0)})
    out_path.write_text(json.dumps(result))


def pct(values: list[float], q: float) -> float:
    """The Q quantile (0..1) of VALUES."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--viewer-procs", type=int, default=2)
    parser.add_argument(
        "--master-nice", type=int, default=0, help="run the master at this nice value (root)"
    )
    parser.add_argument(
        "--switch-interval", type=float, default=0.0, help="the master's sys.setswitchinterval"
    )
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "sender":
            sender(Path(rest[0]), int(rest[1]), float(rest[2]))
        else:
            viewers(int(rest[0]), int(rest[1]), float(rest[2]), float(rest[3]), Path(rest[4]))
        return 0

    with tempfile.TemporaryDirectory(prefix="bramble-bench-fanout-") as tmp:
        state = Path(tmp)
        spec_path, base = write_local_spec(state)
        port = int(base.rsplit(":", 1)[1])
        log = open(state / "master.log", "wb")  # noqa: SIM115
        boot = "import runpy, sys; "
        if args.switch_interval:
            boot += f"sys.setswitchinterval({args.switch_interval}); "
        boot += f"sys.argv = ['bramble', 'master', '--spec', {str(spec_path)!r}]; "
        boot += "runpy.run_module('bramble', run_name='__main__')"
        master = subprocess.Popen(
            ["nice", "-n", str(args.master_nice), sys.executable, "-c", boot],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        me = [sys.executable, __file__, "--child"]
        children: list[subprocess.Popen[bytes]] = []
        try:
            if not wait_ready(base, master):
                print((state / "master.log").read_text(), file=sys.stderr)
                return 1
            warm = 5.0
            total = args.seconds + warm
            children.append(
                subprocess.Popen([*me, "sender", str(spec_path), str(args.nodes), str(total + 4)])
            )
            time.sleep(2)  # every node known before the viewers' snapshots
            until = time.time() + total
            per = args.viewers // args.viewer_procs
            outs = [state / f"viewers-{i}.json" for i in range(args.viewer_procs)]
            for i, out in enumerate(outs):
                n = (
                    per
                    if i < args.viewer_procs - 1
                    else args.viewers - per * (args.viewer_procs - 1)
                )
                children.append(
                    subprocess.Popen(
                        [
                            *me,
                            "viewers",
                            str(port),
                            str(n),
                            str(until - args.seconds),
                            str(until),
                            str(out),
                        ]
                    )
                )
            time.sleep(warm)
            cpu0, t0 = cpu_seconds(master.pid), time.monotonic()
            view0 = [cpu_seconds(c.pid) for c in children]
            rss_peak = 0.0
            while time.time() < until:
                rss_peak = max(rss_peak, rss_mib(master.pid))
                time.sleep(1)
            elapsed = time.monotonic() - t0
            cpu = (cpu_seconds(master.pid) - cpu0) / elapsed
            others = [
                (cpu_seconds(c.pid) - c0) / elapsed for c, c0 in zip(children, view0, strict=True)
            ]
            for child in children[1:]:
                child.wait(60)
            results = [v for out in outs for v in json.loads(out.read_text())]
            stats = httpx.get(base + "/api/stats", timeout=10).json()
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            master.terminate()
            master.wait(10)
    delays = [d for v in results for d in v["delays"]]
    per_viewer = [len(v["delays"]) for v in results]
    worst = max(pct(v["delays"], 0.99) for v in results if v["delays"])
    print(f"nodes {args.nodes} at 1 Hz, viewers {len(results)}, measured {args.seconds:.0f} s")
    print(f"master accepted {stats['accepted']} datagrams, rejected {stats['rejected']}")
    print(
        f"samples delivered per viewer: min {min(per_viewer)} "
        f"median {statistics.median(per_viewer):.0f} "
        f"(expected about {int(args.nodes * args.seconds)})"
    )
    print(
        f"resync snapshots after the first: {sum(max(0, int(v['snapshots']) - 1) for v in results)}"
    )
    print(
        f"delay send->viewer ms: p50 {pct(delays, 0.5) * 1000:.1f}  "
        f"p99 {pct(delays, 0.99) * 1000:.1f}  "
        f"max {max(delays) * 1000:.1f}  worst viewer p99 {worst * 1000:.1f}"
    )
    print(f"master CPU {cpu:.0%} of one core, peak RSS {rss_peak:.1f} MiB")
    print("sender, viewer processes CPU: " + ", ".join(f"{c:.0%}" for c in others))
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
