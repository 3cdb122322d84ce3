"""Dashboard with many nodes: page load and frame time in chromium while updates stream.

Starts a master on loopback and a sender process that signs one datagram per node per second
(1,000 nodes by default, spread evenly over the second, their CPU and temperature moving so
every update changes what is drawn), for a bounded time. Then opens the page in headless
chromium (Debian's, through Playwright) at 1920x1080, in the compact view and then the cards
view, and reports for each:

- load: from navigation start to the first frame painted with every node's cell (or card)
  filled in, over LOADS loads (median and each);
- frames: requestAnimationFrame intervals over FRAMES seconds while the updates stream
  (median, p99, max, frames over 50 ms) and the main thread's long tasks in that time.

    python bench/dashboard.py [--nodes 1000] [--loads 3] [--frames 10] [--views compact,cards]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import SAMPLE, cpu_seconds, send_paced, wait_ready, write_local_spec
from playwright.sync_api import sync_playwright

from bramble.telemetry.wire import Sample

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip

# Installed before the page's own scripts: notes the first frame in which every node is drawn
# (the frame after the one in which the last is filled in: that one has been painted), and
# the main thread's long tasks.
WATCH = """(() => {
  const want = %d, sel = %r;
  window.__full = null;
  window.__long = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__long.push([e.startTime, e.duration]);
  }).observe({ type: "longtask", buffered: true });
  let seen = false;
  const tick = () => {
    if (seen) { window.__full = performance.now(); return; }
    const items = document.querySelectorAll(sel);
    if (items.length === want && [...items].every((c) => !c.hidden && c.textContent.includes("%%")))
      seen = true;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();"""

FRAMES = """(seconds) => new Promise((done) => {
  const times = [];
  const t0 = performance.now();
  const step = (t) => {
    times.push(t);
    if (t - t0 < seconds * 1000) requestAnimationFrame(step);
    else done({ times, long: window.__long.filter(([s]) => s >= t0) });
  };
  requestAnimationFrame(step);
})"""


def sample(node: int) -> Sample:
    """Node NODE's sample now: CPU and temperature move every second, differently per node."""
    tick = int(time.time())
    cpu = ((node * 37 + tick * 7) % 100) / 100
    return SAMPLE._replace(
        cpuusage=cpu,
        cputemp=40.0 + (node * 13 + tick) % 45,
        cores=(cpu, cpu / 2, cpu, cpu / 3),
    )


def pct(values: list[float], q: float) -> float:
    """The Q quantile (0..1) of VALUES."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(base: str, view: str, nodes: int, loads: int, frames: float) -> dict[str, Any]:
    """Load the page LOADS times in VIEW; then FRAMES seconds of frame times."""
    sel = ".cell" if view == "compact" else ".card"
    out: dict[str, Any] = {"view": view, "loads": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(f"localStorage.setItem('bramble-view', {view!r});")
        page.add_init_script(WATCH % (nodes, sel))
        for _ in range(loads):
            page.goto(base + "/", wait_until="commit")
            page.wait_for_function("window.__full !== null", timeout=120_000, polling=200)
            out["loads"].append(page.evaluate("window.__full") / 1000)
        time.sleep(2)
        got = page.evaluate(FRAMES, frames)
        gaps = [b - a for a, b in zip(got["times"], got["times"][1:], strict=False)]
        out.update(
            frames=len(gaps),
            median=statistics.median(gaps),
            p99=pct(gaps, 0.99),
            max=max(gaps),
            over50=sum(g > 50 for g in gaps),
            long_ms=sum(d for _, d in got["long"]),
            long_n=len(got["long"]),
            shown=page.inner_text("#shown"),
            errors=errors,
        )
        browser.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--frames", type=float, default=10.0, help="seconds of frame times")
    parser.add_argument("--views", default="compact,cards")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec_path, nodes, seconds = args.child
        send_paced(Path(spec_path), int(nodes), float(seconds), sample, int(time.time() * 1000))
        return 0

    views = args.views.split(",")
    # bounded: long enough for every load and frame window of every view, then it stops
    seconds = 15 + len(views) * (args.loads * 15 + args.frames + 10)
    with tempfile.TemporaryDirectory(prefix="bramble-bench-dash-") as tmp:
        state = Path(tmp)
        spec_path, base = write_local_spec(state)
        master = subprocess.Popen(
            [sys.executable, "-m", "bramble", "master", "--spec", str(spec_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        sender = None
        try:
            if not wait_ready(base, master):
                return 1
            sender = subprocess.Popen(
                [sys.executable, __file__, "--child", str(spec_path), str(args.nodes), str(seconds)]
            )
            deadline = time.monotonic() + 30
            while httpx.get(base + "/api/stats", timeout=5).json()["nodes"] < args.nodes:
                if time.monotonic() > deadline:
                    print("the nodes did not all arrive", file=sys.stderr)
                    return 1
                time.sleep(0.5)
            cpu0, t0 = cpu_seconds(master.pid), time.monotonic()
            results = [measure(base, v, args.nodes, args.loads, args.frames) for v in views]
            master_cpu = (cpu_seconds(master.pid) - cpu0) / (time.monotonic() - t0)
            stats = httpx.get(base + "/api/stats", timeout=5).json()
        finally:
            if sender is not None and sender.poll() is None:
                sender.terminate()
                sender.wait(10)
            master.terminate()
            master.wait(10)
    print(f"{args.nodes} nodes at 1 Hz (real signed UDP on loopback), chromium 1920x1080")
    for r in results:
        loads = ", ".join(f"{s:.2f}" for s in r["loads"])
        print(
            f"{r['view']:>8}: load to every node drawn {statistics.median(r['loads']):.2f} s "
            f"median ({loads}); frames over {args.frames:.0f} s: {r['frames']}, interval "
            f"median {r['median']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms, "
            f"{r['over50']} over 50 ms; long tasks {r['long_n']} ({r['long_ms']:.0f} ms); "
            f"{r['shown']}; page errors {len(r['errors'])}"
        )
    print(f"master accepted {stats['accepted']}, rate {stats['rate']:.0f}/s; CPU {master_cpu:.0%}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
