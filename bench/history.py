"""History on disk: what 50 nodes at 1 Hz cost the master's disk, and how fast charts read.

Two parts, one run:

1. Live: a real master on loopback, a sender process signing one datagram per node per second
   (values that move as a board's do: CPU in jiffies, memory in kB, load in hundredths,
   network, disk and swap counters, filesystems), for --seconds after a warm-up. Reported:
   bytes the master wrote to disk per second (`/proc/PID/io` write_bytes), its CPU, the
   history files' size after a clean stop, and bytes per sample (18 stored metrics a
   datagram, 13 before the board signals were stored; the per-core values come free).
   With --prometheus, a Prometheus server scrapes the master's /metrics each second for the
   same run: its write rate and its storage per sample beside ours.
2. Offline: the engine itself (`History.write`, as the master's writer thread calls it) fed an
   hour of 50 such nodes, one batch a second: bytes per sample on disk after an hour; then a
   second store with 100 nodes for an hour and one node for 24 hours, its last --head seconds
   still in memory as a master's are between flushes: how long the charts take (a 24 h chart of
   one node, a 1 h chart of 100 nodes, as the API asks for them, the head included; cold is the
   first read on a new reader, warm the median of the next five).

    python bench/history.py [--nodes 50] [--seconds 60] [--prometheus]
"""

from __future__ import annotations

import argparse
import inspect
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import cpu_seconds, send_paced, wait_ready, write_local_spec

from bramble.master import history as engine

try:  # the block engine reads in a module of its own; the row engine in history itself
    from bramble.master.history_reader import HistoryReader
except ImportError:
    HistoryReader = engine.HistoryReader  # type: ignore[attr-defined,misc,assignment]
from bramble.telemetry.metrics import STORED
from bramble.telemetry.wire import Sample

CORES = 4


def metric_row(sample: Sample, rx: float, tx: float, rates: dict[str, float]) -> tuple[float, ...]:
    """The stored metrics of SAMPLE as the engine under test takes them (one from before the
    board signals were stored takes no rates)."""
    if "rates" in inspect.signature(engine.metric_row).parameters:
        return engine.metric_row(sample, rx, tx, rates)
    return engine.metric_row(sample, rx, tx)


class Board:
    """One simulated node whose readings wander as a real board's do."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.busy = rng.randrange(400)
        self.temp = 45_000 + rng.randrange(5000)
        self.load = [rng.randrange(200) for _ in range(3)]
        self.available = 3_000_000 + rng.randrange(500_000)
        self.disk = 4_200_000_000 + rng.randrange(1 << 20) * 4096
        self.rx, self.tx = rng.randrange(1 << 30), rng.randrange(1 << 30)
        self.uptime = float(rng.randrange(86_400))
        self.diskio = [rng.randrange(1 << 30), rng.randrange(1 << 30)]  # bytes read, written
        self.swap = [rng.randrange(1000), rng.randrange(1000)]  # pages in, out
        self.rates: dict[str, float] = {}
        """The last second's disk and swap rates, as the master derives them."""
        self.tick = 0

    def step(self) -> Sample:
        """The next second's sample."""
        r = self.rng
        self.tick += 1
        self.busy = min(400, max(0, self.busy + r.randint(-20, 20)))
        self.temp = min(85_000, max(30_000, self.temp + r.choice((-538, 0, 0, 538))))
        self.load = [min(400, max(0, x + r.randint(-3, 3))) for x in self.load]
        self.available = max(100_000, self.available + r.randint(-100, 100) * 4)
        if self.tick % 10 == 0:
            self.disk += r.randrange(4) * 4096
        self.rx += r.randrange(20_000)
        self.tx += r.randrange(5_000)
        self.uptime += 1.0
        # block I/O in 4 KiB pages, in bursts: reads now and then, writes a second in three
        moved = [
            r.randrange(1, 64) * 4096 if r.random() < 0.1 else 0,
            r.randrange(1, 32) * 4096 if r.random() < 0.3 else 0,
        ]
        paged = [1 if r.random() < 0.02 else 0, 1 if r.random() < 0.01 else 0]
        self.diskio = [a + b for a, b in zip(self.diskio, moved, strict=True)]
        self.swap = [a + b for a, b in zip(self.swap, paged, strict=True)]
        names = ("disk_read", "disk_write", "swap_in", "swap_out")
        self.rates = dict(zip(names, map(float, moved + paged), strict=True))
        cores = tuple(min(100, max(0, self.busy // 4 + r.randint(-10, 10))) / 100 for _ in "1234")
        return Sample(
            cpufreq=r.choice((600, 1500, 1500, 1500)),
            cputemp=self.temp / 1000,
            cpuusage=self.busy / 400,
            loadavg=(self.load[0] / 100, self.load[1] / 100, self.load[2] / 100),
            meminfo={
                "MemTotal": 3884088, "MemFree": self.available - 500_000,
                "MemAvailable": self.available, "Buffers": 61440, "Cached": 601236,
                "SwapTotal": 102396, "SwapFree": 102396,
            },
            cores=cores,
            disk={"total": 31_000_000_000, "used": self.disk, "free": 26_000_000_000},
            net={"eth0": (self.rx, self.tx)},
            uptime=self.uptime,
            swap=(self.swap[0], self.swap[1]),
            diskio=(self.diskio[0], self.diskio[1]),
            fs={"/": (31_000_000_000, self.disk, 26_000_000_000),
                "/boot": (500_000_000, 60_000_000, 440_000_000)},
        )  # fmt: skip


def sender(spec_path: Path, nodes: int, seconds: float) -> None:
    """One signed datagram per node per second, spread over the second."""
    boards = [Board(random.Random(i)) for i in range(nodes)]
    send_paced(spec_path, nodes, seconds, lambda node: boards[node].step(), 1)


def write_bytes(pid: int) -> int:
    """Bytes process PID has caused to be written to disk."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def files_size(directory: Path, prefix: str) -> int:
    """Bytes of the files in DIRECTORY whose names start with PREFIX (a database, its WAL)."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.name.startswith(prefix))


def prometheus_config(state: Path, base: str) -> Path:
    """A Prometheus configuration scraping the master at BASE once a second."""
    host = base.split("://", 1)[1]
    path = state / "prometheus.yml"
    path.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
        f"scrape_configs:\n  - job_name: bramble\n    static_configs:\n"
        f"      - targets: ['{host}']\n"
    )
    return path


def prometheus_samples(url: str) -> float:
    """Samples Prometheus at URL has appended to its head."""
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("prometheus_tsdb_head_samples_appended_total"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def live(args: argparse.Namespace) -> None:
    """Part 1: a real master under NODES at 1 Hz."""
    with tempfile.TemporaryDirectory(prefix="bramble-bench-history-") as tmp:
        state = Path(tmp)
        spec_path, base = write_local_spec(state)
        log = open(state / "master.log", "wb")  # noqa: SIM115
        if args.flush_seconds is not None:
            text = spec_path.read_text().replace(
                "[history]\n", f"[history]\nflush_seconds = {args.flush_seconds}\n"
            )
            spec_path.write_text(text)
        boot = "import runpy, sys; "
        boot += f"sys.argv = ['bramble', 'master', '--spec', {str(spec_path)!r}]; "
        boot += "runpy.run_module('bramble', run_name='__main__')"
        master = subprocess.Popen(
            [sys.executable, "-c", boot], stdout=log, stderr=subprocess.STDOUT
        )
        prom: subprocess.Popen[bytes] | None = None
        prom_url = ""
        children: list[subprocess.Popen[bytes]] = []
        try:
            if not wait_ready(base, master):
                print((state / "master.log").read_text(), file=sys.stderr)
                raise SystemExit(1)
            if args.prometheus:
                from bramble.demo import free_port

                prom_port = free_port()
                prom_url = f"http://127.0.0.1:{prom_port}"
                prom = subprocess.Popen(
                    [
                        "prometheus", f"--config.file={prometheus_config(state, base)}",
                        f"--storage.tsdb.path={state / 'prom'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            warm = 5.0
            me = [sys.executable, __file__, "--child"]
            children.append(
                subprocess.Popen([*me, str(spec_path), str(args.nodes), str(args.seconds + warm)])
            )
            time.sleep(warm)
            accepted0 = httpx.get(base + "/api/stats", timeout=10).json()["accepted"]
            w0, cpu0, t0 = write_bytes(master.pid), cpu_seconds(master.pid), time.monotonic()
            pw0 = write_bytes(prom.pid) if prom else 0
            ps0 = prometheus_samples(prom_url) if prom else 0.0
            time.sleep(args.seconds)
            elapsed = time.monotonic() - t0
            written = write_bytes(master.pid) - w0
            cpu = (cpu_seconds(master.pid) - cpu0) / elapsed
            stats = httpx.get(base + "/api/stats", timeout=10).json()
            health = httpx.get(base + "/api/health", timeout=10).json()
            pw = write_bytes(prom.pid) - pw0 if prom else 0
            ps = prometheus_samples(prom_url) - ps0 if prom else 0.0
            for child in children:
                child.wait(30)
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
                    child.wait(10)
            master.send_signal(signal.SIGTERM)
            master.wait(30)
            log.close()
            if prom is not None:
                prom.terminate()
                prom.wait(30)
        datagrams = stats["accepted"] - accepted0
        size = files_size(state, "history.db")
        total_samples = stats["accepted"] * len(STORED)
        print(f"live: {args.nodes} nodes at 1 Hz, measured {elapsed:.0f} s after {warm:.0f} s")
        print(f"  accepted {stats['accepted']} datagrams, rejected {stats['rejected']}")
        print(
            f"  master wrote {written / elapsed / 1000:.1f} KB/s to disk "
            f"({written / max(1, datagrams * len(STORED)):.1f} bytes per sample written), "
            f"CPU {cpu:.1%} of one core"
        )
        print(
            f"  history files after a clean stop: {size} bytes for {total_samples} samples = "
            f"{size / max(1, total_samples):.2f} bytes per sample (a short run: fixed costs weigh)"
        )
        flushed = health.get("history_flushed")
        if flushed is not None:
            print(f"  /api/health history_flushed: {time.time() - flushed:.0f} s before the end")
        if prom is not None:
            tsdb = state / "prom"
            psize = sum(p.stat().st_size for p in tsdb.rglob("*") if p.is_file())
            print(
                f"  prometheus (scraping /metrics each second): wrote {pw / elapsed / 1000:.1f} "
                f"KB/s, appended {ps / elapsed:.0f} samples/s, its storage {psize} bytes = "
                f"{psize / max(1.0, ps):.2f} bytes per sample (WAL + head chunks; a 60 s run "
                "is never compacted into a block)"
            )


def prometheus_block(nodes: int, seconds: int) -> None:
    """Prometheus's own storage for the same values, compacted: NODES boards for SECONDS as
    OpenMetrics, made into a TSDB block by `promtool tsdb create-blocks-from openmetrics`."""
    boards = [Board(random.Random(i)) for i in range(nodes)]
    end = int(time.time()) // 3600 * 3600
    rows = []  # per board, per second: the stored metrics
    for board in boards:
        rows.append([metric_row(board.step(), 900.5, 300.25, board.rates) for _ in range(seconds)])
    with tempfile.TemporaryDirectory(prefix="bramble-bench-promblock-") as tmp:
        text = Path(tmp) / "data.om"
        with text.open("w") as out:
            for k, metric in enumerate(STORED):
                name = f"bramble_node_{metric.name}"
                out.write(f"# TYPE {name} gauge\n")
                for i in range(nodes):
                    for t in range(seconds):
                        value = rows[i][t][k]
                        out.write(f'{name}{{node="sim-{i:04d}"}} {value:g} {end - seconds + t}\n')
            out.write("# EOF\n")
        blocks = Path(tmp) / "blocks"
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(text), str(blocks)],
            check=True, capture_output=True,
        )  # fmt: skip
        size = sum(p.stat().st_size for p in blocks.rglob("*") if p.is_file())
    samples = nodes * seconds * len(STORED)
    print(
        f"prometheus block (promtool, {nodes} nodes x {seconds} s, compacted): {size} bytes "
        f"for {samples} samples = {size / samples:.2f} bytes per sample"
    )


def replay_writes(nodes: int, seconds: int) -> None:
    """What the master's replay store alone writes: NODES windows saved once a second, as the
    live view saves them, for SECONDS (this process's write_bytes)."""
    from bramble.master.replay import ReplayStore

    with tempfile.TemporaryDirectory(prefix="bramble-bench-replay-") as tmp:
        store = ReplayStore(Path(tmp) / "replay.windows").open()
        w0, t0 = write_bytes(os.getpid()), time.monotonic()
        for s in range(seconds):
            store.save({f"sim-{i:04d}": (1_700_000_000, s + 1, time.time()) for i in range(nodes)})
            time.sleep(1)
        os.sync()
        rate = (write_bytes(os.getpid()) - w0) / (time.monotonic() - t0)
        store.close()
    print(f"replay store alone: {nodes} windows saved once a second wrote {rate / 1000:.1f} KB/s")


def fill(
    path: Path, nodes: int, seconds: int, end: int, *, one: int = 0, head: int = 0
) -> tuple[int, engine.History]:
    """NODES boards for SECONDS up to END (and ONE more node for 24 h), as the writer thread
    writes them: one batch a second, flushed and rolled up once a minute; the samples written,
    and the store: closed, or open with the last HEAD seconds still in memory (not flushed)."""
    history = engine.History(path, max_bytes=1 << 40).open()
    flush = getattr(history, "flush", None)
    boards = [Board(random.Random(i)) for i in range(nodes)]
    long = Board(random.Random(-1))
    written = 0
    start = end - max(seconds, 86_400 if one else 0)
    for t in range(start, end):
        rows = []
        if t >= end - seconds:
            for i, board in enumerate(boards):
                s = board.step()
                rx = tx = float(board.rng.randrange(20_000)) + 0.5
                row = metric_row(s, rx, tx, board.rates)
                rows.append((f"fill-{i:03d}", t + 0.25, row, s.cores))
        if one:
            s = long.step()
            rows.append(("long", t + 0.5, metric_row(s, 900.5, 300.25, long.rates), s.cores))
        history.write(rows)
        written += len(rows)
        if (t % 60 == 59 and t < end - head) or (head and t == end - head - 1):
            if flush is not None:
                flush(float(t + 1))
            history.roll_up(float(t + 1))
    if not head:
        if flush is not None:
            flush(float(end))
        history.close()
    return written * len(STORED), history


def offline(args: argparse.Namespace) -> None:
    """Part 2: bytes per sample after an hour, and chart read times."""
    with tempfile.TemporaryDirectory(prefix="bramble-bench-history-") as tmp:
        state = Path(tmp)
        end = int(time.time())
        t0, w0 = time.process_time(), write_bytes(os.getpid())
        samples, _ = fill(state / "hour.db", args.nodes, 3600, end)
        took, written = time.process_time() - t0, write_bytes(os.getpid()) - w0
        size = files_size(state, "hour.db")
        print(f"offline: {args.nodes} nodes x 1 h at 1 Hz, written by the engine in {took:.1f} s")
        print(f"  {size} bytes for {samples} samples = {size / samples:.2f} bytes per sample")
        print(
            f"  the engine wrote {written} bytes to disk for the hour (write_bytes) = "
            f"{written / 3600 / 1000:.1f} KB per second of the hour"
        )

        _, history = fill(state / "charts.db", 100, 3600, end, one=1, head=args.head)
        print(
            f"  charts: {history.head_rows} rows in memory (the last {args.head} s), "
            "on disk the rest"
        )
        for name, chart in (("node 24 h", node_chart), ("cluster 1 h", cluster_chart)):
            reader = HistoryReader(state / "charts.db", history.keep, history).open()
            ms = []
            for _ in range(6):
                t = time.perf_counter()
                points = chart(reader)
                ms.append((time.perf_counter() - t) * 1000)
                assert points > 100, (name, points)
            reader.close()
            warm = statistics.median(ms[1:])
            print(f"  {name} chart ({points} points): cold {ms[0]:.1f} ms, warm {warm:.1f} ms")
        history.close()


def node_chart(reader: HistoryReader) -> int:
    """A node's 24 h chart as the dashboard asks for it: its points."""
    now = time.time()
    start, step = reader.resolve(-86_400, None, now)
    series = reader.node_series("long", ["cpuusage"], start, step, now)
    return len(series["cpuusage"])


def cluster_chart(reader: HistoryReader) -> int:
    """The cluster's 1 h CPU chart over 101 nodes: its points."""
    now = time.time()
    start, step = reader.resolve(-3600, None, now)
    return len(reader.cluster_series("cpuusage", start, step, now))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--prometheus", action="store_true", help="scrape with Prometheus too")
    parser.add_argument("--flush-seconds", type=float, help="the master's history.flush_seconds")
    parser.add_argument(
        "--prometheus-block", type=int, metavar="NODES", help="also a compacted Prometheus block"
    )
    parser.add_argument(
        "--replay", type=int, metavar="SECONDS", help="also the replay store's writes alone"
    )
    parser.add_argument(
        "--head", type=int, default=59, help="seconds of the chart store left in memory"
    )
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-offline", action="store_true")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sender(Path(args.child[0]), int(args.child[1]), float(args.child[2]))
        return 0
    if args.prometheus and shutil.which("prometheus") is None:
        print("prometheus is not installed (apt-get install prometheus)", file=sys.stderr)
        return 1
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores")
    if not args.skip_live:
        live(args)
    if not args.skip_offline:
        offline(args)
    if args.replay:
        replay_writes(args.nodes, args.replay)
    if args.prometheus_block:
        prometheus_block(args.prometheus_block, 3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
