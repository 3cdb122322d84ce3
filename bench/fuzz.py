"""Fuzz at scale: mutated datagrams at a real master, and hostile specs through render and
the real config checkers. The suite runs the same harnesses (tests/fuzzing.py) small.

Datagrams: a master on loopback (unsigned telemetry allowed, so both decoders are fuzzed)
gets DATAGRAMS mutations of a good datagram, half of them signed with the cluster's key, then
NAMES datagrams each from a node name the spec does not have. Reported: datagrams sent,
counted by the master, accepted, rejected by reason, crashes (the master gone, or `internal`
rejections, or tracebacks in its log), its resident memory before and after, and whether
every answer of its API stayed valid JSON.

Specs: SPECS hypothesis examples (good values with one or two hostile keys); each spec that
passes `parse_spec` is rendered and checked by `nft` (loaded and read back, as root),
`dnsmasq --test` and, for the first few, `systemd-analyze verify`. Reported: specs refused,
specs passed, tool runs, problems found.

    python bench/fuzz.py [--datagrams 200000] [--names 50000] [--specs 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import rss_mib, wait_ready

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bramble_testing import sample_body
from fuzzing import Tools, datagrams, rendered_problems, spec_texts

from bramble.demo import free_port, local_spec_text
from bramble.init import secrets_text
from bramble.spec import load_secrets, load_spec
from bramble.telemetry.encode import sign


def strict(text: str) -> bool:
    def refuse(name: str) -> None:
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


def fuzz_datagrams(count: int, names: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bramble-fuzz-") as tmp:
        state = Path(tmp)
        port = free_port()
        text = local_spec_text(3, port, free_port(socket.SOCK_DGRAM), state,
                               telemetry="interval = 1.0\nallow_unsigned = true")  # fmt: skip
        spec_path = state / "bramble.toml"
        spec_path.write_text(text)
        (state / "bramble.secrets.toml").write_text(secrets_text())
        (state / "bramble.secrets.toml").chmod(0o600)
        spec, secrets = load_spec(spec_path), load_secrets(spec_path)
        base = f"http://127.0.0.1:{port}"
        log = open(state / "master.log", "wb")  # noqa: SIM115
        master = subprocess.Popen(
            [sys.executable, "-m", "bramble", "master", "--spec", str(spec_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            if not wait_ready(base, master):
                print("the master did not start:", (state / "master.log").read_text()[-2000:])
                return
            time.sleep(1)
            rss_before = rss_mib(master.pid)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            target = ("127.0.0.1", spec.telemetry.port)
            key, key_id = secrets.telemetry_key, secrets.telemetry_key_id
            start = time.monotonic()
            sent = 0
            for i, (_how, data) in enumerate(datagrams(sample_body("node-1", 1), count, seed=14)):
                body = data.replace(b'"seq":1,', f'"seq":{i + 2},'.encode())
                sock.sendto(sign(body, key, key_id) if i % 2 else body, target)
                sent += 1
                if i % 500 == 499:
                    time.sleep(0.02)  # about 25,000 a second: within the receive buffer
            for i in range(names):
                body = json.dumps(sample_body(f"fake-{i}", 1), separators=(",", ":")).encode()
                sock.sendto(sign(body, key, key_id), target)
                sent += 1
                if i % 500 == 499:
                    time.sleep(0.02)
            elapsed = time.monotonic() - start
            stats: dict[str, object] = {}
            counted = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                stats = httpx.get(base + "/api/stats", timeout=10).json()
                counted = int(stats["accepted"]) + sum(stats["rejected"].values())  # type: ignore[call-overload, arg-type]
                if counted >= sent:
                    break
                time.sleep(0.5)
            time.sleep(2)  # history batches
            rss_after = rss_mib(master.pid)
            valid = all(
                strict(httpx.get(base + path, timeout=10).text)
                for path in ("/api/nodes", "/api/stats", "/api/changes")
            )
            metrics = httpx.get(base + "/metrics", timeout=10)
            nodes = len(httpx.get(base + "/api/nodes", timeout=10).json())
            alive = master.poll() is None
        finally:
            master.send_signal(signal.SIGTERM)
            try:
                master.wait(15)
            except subprocess.TimeoutExpired:
                master.kill()
            log.close()
        tracebacks = (state / "master.log").read_text(errors="replace").count("Traceback")
        rejected: dict[str, int] = dict(stats.get("rejected", {}))  # type: ignore[call-overload]
        print(f"datagrams: {count:,} mutated (half signed) + {names:,} invented names")
        print(f"  sent {sent:,} in {elapsed:.1f} s, counted {counted:,}, "
              f"accepted {stats.get('accepted', 0):,}")  # fmt: skip
        for reason, n in sorted(rejected.items(), key=lambda kv: -kv[1]):
            print(f"  rejected {reason}: {n:,}")
        crashes = (0 if alive else 1) + rejected.get("internal", 0) + tracebacks
        print(f"  crashes: {crashes} (master alive: {alive}, internal: "
              f"{rejected.get('internal', 0)}, tracebacks logged: {tracebacks})")  # fmt: skip
        print(f"  nodes in the table: {nodes}; API answers valid JSON: {valid}; "
              f"/metrics {metrics.status_code}")  # fmt: skip
        print(f"  master RSS: {rss_before:.1f} MiB before, {rss_after:.1f} MiB after")


def fuzz_specs(count: int) -> None:
    from hypothesis import HealthCheck, given, settings

    from bramble.errors import SpecError
    from bramble.spec import parse_spec

    tools = Tools.find(netns=os.geteuid() == 0)
    problems: list[tuple[str, list[str]]] = []
    counts = {"refused": 0, "passed": 0}

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(text=spec_texts())
    def run(text: str) -> None:
        try:
            spec = parse_spec(text, "fuzz.toml")
        except SpecError as exc:
            counts["refused"] += 1
            if "\n" in str(exc):
                problems.append((text, ["a spec error of more than one line"]))
            return
        counts["passed"] += 1
        units = tools.counts.get("systemd-analyze verify", 0) < 20
        found = rendered_problems(spec, tools, units=units)
        if found:
            problems.append((text, found))

    start = time.monotonic()
    try:
        run()
    finally:
        tools.close()
    elapsed = time.monotonic() - start
    print(f"specs: {count:,} hypothesis examples in {elapsed:.0f} s")
    print(f"  refused by check: {counts['refused']:,}, passed and rendered: {counts['passed']:,}")
    for tool, n in sorted(tools.counts.items()):
        print(f"  {tool}: {n:,} runs")
    print(f"  problems: {len(problems)}")
    for text, found in problems[:5]:
        print("  ---", *found, text, sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datagrams", type=int, default=200_000)
    parser.add_argument("--names", type=int, default=50_000)
    parser.add_argument("--specs", type=int, default=2_000)
    args = parser.parse_args()
    if args.datagrams or args.names:
        fuzz_datagrams(args.datagrams, args.names)
    if args.specs:
        fuzz_specs(args.specs)


if __name__ == "__main__":
    main()
