"""Alert evaluation: 1,000 nodes at 1 Hz against 10 rules, in a real master.

Two runs of a real `bramble master`, each fed signed datagrams from 1,000 node identities at
1 Hz over loopback multicast for the same time:

1. no alerting (`[alerting] defaults = false`, no rules): the baseline;
2. the 6 built-in rules plus 4 of the spec's (10 rules; `history_stopped` is the master's
   own, so 9 are evaluated per node), with a webhook to an HTTP server in this script
   (`group_wait = 0`, `group_interval` as given). Every second one more node turns hot
   (`cputemp` 85 in its next 5 datagrams; the `hot` rule: `cputemp > 70` for 2 s).

Reported: the master's CPU in each run and the difference (what alerting adds), and the time
from a node's first hot datagram leaving this script to the webhook that first tells its
alert firing, less the rule's `for`: median, p99 and max.

    python bench/alerts.py [--seconds 60] [--group-interval 1] [--delays]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import SAMPLE, cpu_seconds, rss_mib, wait_ready, write_local_spec

from bramble.spec import load_secrets, load_spec
from bramble.telemetry.encode import encode

NODES = 1000
FOR = 2.0
HOT_ROUNDS = 5
"""Datagrams a node sends hot: its `for` and more, however late the sender runs."""
RULES = f"""
[[alerts]]
name = "hot"
metric = "cputemp"
threshold = 70
for = {FOR}

[[alerts]]
name = "busy"
metric = "load1"
threshold = 8
for = "1m"

[[alerts]]
name = "swapping"
metric = "swap_used"
threshold = 1000000

[[alerts]]
name = "cpu_saturated"
metric = "cpuusage"
op = ">="
threshold = 0.99
for = "30s"
"""


RECEIVER = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
out = open(sys.argv[1], "a", buffering=1)
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out.write(json.dumps([time.time(), json.loads(body)]) + "\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Receiver:
    """An HTTP server in a process of its own (so this one's sending never delays it),
    writing (arrival time, payload) of every POST to a file."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(log)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}/hook"

    def got(self) -> list[tuple[float, dict[str, Any]]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [tuple(json.loads(line)) for line in lines]  # type: ignore[misc]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def run(seconds: float, alerting: str, rules: str) -> tuple[float, float, float, dict[str, float]]:
    """One run: the master's CPU fraction over SECONDS, its RSS, the rounds of datagrams
    sent per second, and node -> when it turned hot."""
    with tempfile.TemporaryDirectory(prefix="bramble-bench-alerts-") as tmp:
        state = Path(tmp)
        spec_path, base = write_local_spec(state)
        text = spec_path.read_text()
        spec_path.write_text(text + f"\n[alerting]\n{alerting}\n{rules}")
        spec = load_spec(spec_path)
        secrets = load_secrets(spec_path)
        target = (str(spec.telemetry.group), spec.telemetry.port)
        with open(state / "master.log", "wb") as log:
            master = subprocess.Popen(
                [sys.executable, "-m", "bramble", "master", "--spec", str(spec_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        hot_from: dict[str, float] = {}
        hot_left: dict[str, int] = {}
        hot = SAMPLE._replace(cputemp=85.0)
        try:
            if not wait_ready(base, master):
                print((state / "master.log").read_text(), file=sys.stderr)
                raise SystemExit(1)
            warmup = 5.0
            begin = time.time()
            cpu0 = None
            second = 0
            while time.time() - begin < warmup + seconds:
                tick = begin + second
                if cpu0 is None and second >= warmup:
                    cpu0, measured_from = cpu_seconds(master.pid), time.time()
                turning = f"bench-{(second * 7) % NODES:04d}" if second >= warmup else None
                for i in range(NODES):  # spread over the second, as real nodes are
                    name = f"bench-{i:04d}"
                    due = tick + i / NODES
                    pause = due - time.time()
                    if pause > 0.001:
                        time.sleep(pause)
                    now = time.time()
                    if name == turning and name not in hot_from:
                        hot_from[name], hot_left[name] = now, HOT_ROUNDS
                    is_hot = hot_left.get(name, 0) > 0
                    if is_hot:
                        hot_left[name] -= 1
                    data = encode(
                        hot if is_hot else SAMPLE, node=name, boot=1_700_000_000,
                        seq=second + 1, ts=now, interval=1.0,
                        key=secrets.telemetry_key, key_id=secrets.telemetry_key_id,
                    )  # fmt: skip
                    sock.sendto(data, target)
                second += 1
            assert cpu0 is not None
            elapsed = time.time() - measured_from
            cpu = (cpu_seconds(master.pid) - cpu0) / elapsed
            time.sleep(FOR + 3)  # the last alerts are told
            return cpu, rss_mib(master.pid), (second - warmup) / elapsed, hot_from
        finally:
            sock.close()
            master.terminate()
            master.wait(10)


def pure_cost() -> float:
    """Seconds of this process's CPU per node sample to observe it with the 10 rules (the
    registry's values, the readings and every rule), in-process: no sockets."""
    from bramble.master.alerts import Alerts, readings, rules
    from bramble.spec import parse_spec

    alerts = Alerts(rules(parse_spec(RULES)))
    names = [f"bench-{i:04d}" for i in range(NODES)]
    rounds = 5
    start = time.process_time()
    for second in range(rounds):
        for name in names:
            seen = readings(SAMPLE, 1000.0, 2000.0, alerts.metrics, clock_offset=0.01)
            alerts.observe(name, seen, 1_700_000_000 + second)
        alerts.tick(1_700_000_000 + second + 0.5)
    return (time.process_time() - start) / (rounds * NODES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--group-interval", type=float, default=1.0)
    parser.add_argument("--delays", action="store_true", help="print every delay")
    args = parser.parse_args()

    cost = pure_cost()
    print(f"in-process: {cost * 1e6:.1f} us of CPU per node sample and its 10 rules "
          f"({cost * NODES:.1%} of a core for {NODES} nodes at 1 Hz)", flush=True)  # fmt: skip
    base_cpu, base_rss, rate, _ = run(args.seconds, "defaults = false", "")
    print(f"no alerting:    master CPU {base_cpu:6.1%}  RSS {base_rss:.1f} MiB  "
          f"({rate:.2f} rounds of {NODES} datagrams/s)", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bramble-bench-receiver-") as tmp:
        receiver = Receiver(Path(tmp) / "got.jsonl")
        try:
            alerting = (
                f'webhooks = ["{receiver.url}"]\ngroup_wait = 0\n'
                f'group_interval = {args.group_interval}\nrepeat_interval = "1h"'
            )
            cpu, rss, rate, hot_from = run(args.seconds, alerting, RULES)
        finally:
            receiver.close()
        got = receiver.got()
    print(f"10 rules:       master CPU {cpu:6.1%}  RSS {rss:.1f} MiB  "
          f"({rate:.2f} rounds of {NODES} datagrams/s)", flush=True)  # fmt: skip
    print(f"alerting adds:  {cpu - base_cpu:+.1%} of a core", flush=True)
    told: dict[str, float] = {}
    for arrived, payload in got:
        for alert in payload["alerts"]:
            node = alert["labels"]["node"]
            if alert["status"] == "firing" and alert["labels"]["alertname"] == "hot":
                told.setdefault(node, arrived)
    delays = sorted(told[n] - hot_from[n] - FOR for n in told if n in hot_from)
    missed = sorted(set(hot_from) - set(told))
    if args.delays:
        print("delays, s:", " ".join(f"{d:.2f}" for d in delays))
    if not delays:
        print("no hot alert was told", file=sys.stderr)
        return 1
    p99 = delays[min(len(delays) - 1, round(0.99 * (len(delays) - 1)))]
    print(
        f"condition -> webhook, less `for` ({FOR:g} s), {len(delays)} alerts, group_interval "
        f"{args.group_interval:g} s: median {statistics.median(delays) * 1000:.0f} ms, p99 "
        f"{p99 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms; {len(got)} webhooks; "
        f"not told: {len(missed)}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
