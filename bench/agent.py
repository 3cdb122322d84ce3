"""Agent cost: CPU per sample and resident memory, beside a bare sampler loop and gmond.

Runs the real `bramble agent` (the exec'd lean process) on loopback multicast:

1. fast: the agent at 20 Hz and a minimal reference sampler (a tiny Python loop reading
   the same files, no JSON, no signing, no socket) for the same wall time; CPU per sample.
2. 1 Hz side by side: the agent and Ganglia's gmond (Debian ganglia-monitor, ~15 metrics
   collected and sent every second to a loopback port) for the same wall time.

CPU time is the kernel's exact on-CPU time of every thread (/proc/PID/task/*/schedstat),
not tick-sampled utime. Prints a table; about 100 s.

    python bench/agent.py [--fast-seconds 10] [--slow-seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = r"""
import os, sys, time
interval, count = float(sys.argv[1]), int(sys.argv[2])
names = ["/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/net/dev", "/proc/uptime"]
fds = [os.open(n, os.O_RDONLY) for n in names]
next_at = time.monotonic()
for _ in range(count):
    texts = [os.pread(fd, 65536, 0) for fd in fds]
    os.statvfs("/")
    next_at += interval
    time.sleep(max(0.0, next_at - time.monotonic()))
"""

GMOND_CONF = """
globals {{
  daemonize = no
  setuid = no
  debug_level = 0
  max_udp_msg_len = 1472
  mute = no
  deaf = yes
  host_dmax = 0
  cleanup_threshold = 300
  gexec = no
  send_metadata_interval = 0
}}
cluster {{ name = "bench" }}
udp_send_channel {{
  host = 127.0.0.1
  port = {port}
  ttl = 1
}}
modules {{
  module {{ name = "core_metrics" }}
  module {{ name = "cpu_module"  path = "{moddir}/modcpu.so" }}
  module {{ name = "disk_module" path = "{moddir}/moddisk.so" }}
  module {{ name = "load_module" path = "{moddir}/modload.so" }}
  module {{ name = "mem_module"  path = "{moddir}/modmem.so" }}
  module {{ name = "net_module"  path = "{moddir}/modnet.so" }}
}}
collection_group {{
  collect_every = 1
  time_threshold = 1
  metric {{ name = "cpu_user" }}
  metric {{ name = "cpu_system" }}
  metric {{ name = "cpu_idle" }}
  metric {{ name = "cpu_nice" }}
  metric {{ name = "cpu_wio" }}
  metric {{ name = "load_one" }}
  metric {{ name = "load_five" }}
  metric {{ name = "load_fifteen" }}
  metric {{ name = "mem_total" }}
  metric {{ name = "mem_free" }}
  metric {{ name = "mem_cached" }}
  metric {{ name = "mem_buffers" }}
  metric {{ name = "swap_free" }}
  metric {{ name = "bytes_in" }}
  metric {{ name = "bytes_out" }}
  metric {{ name = "disk_free" }}
  metric {{ name = "disk_total" }}
}}
"""


def cpu_ns(pid: int) -> int:
    """On-CPU nanoseconds of every thread of PID (threads that exited are not counted)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread may have ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def rss_kib(pid: int) -> int:
    """Resident memory of PID in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def write_spec(directory: Path, port: int) -> Path:
    """The `bramble init` spec, sending on loopback to PORT, with its secrets file."""
    from bramble.init import secrets_text, spec_text

    text = re.sub(r"(?m)^port = 6000\b", f"port = {port}", spec_text(), count=1)
    text = re.sub(r'(?m)^interface = ""', 'interface = "127.0.0.1"', text, count=1)
    spec = directory / "bramble.toml"
    spec.write_text(text)
    fd = os.open(directory / "bramble.secrets.toml", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets_text())
    return spec


def start_agent(spec: Path, interval: float) -> subprocess.Popen[bytes]:
    """The real CLI; it execs the lean agent, so the PID stays the agent's."""
    bramble = shutil.which("bramble") or "bramble"
    return subprocess.Popen(
        [bramble, "agent", "--spec", str(spec), "--interval", str(interval)],
        stdout=subprocess.DEVNULL,
    )


def wait_lean(proc: subprocess.Popen[bytes]) -> None:
    """Wait until PROC has exec'd the lean agent (its command line says -S)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        if b"bramble.telemetry.agent" in cmdline:
            return
        time.sleep(0.05)
    raise SystemExit("the agent did not start")


def measure(pids: dict[str, int], seconds: float) -> dict[str, tuple[float, int]]:
    """CPU seconds used by each PID over SECONDS of wall time, and its RSS at the end."""
    before = {name: cpu_ns(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: ((cpu_ns(pid) - before[name]) / 1e9, rss_kib(pid)) for name, pid in pids.items()}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then kill if it lingers."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    """Run both phases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast-seconds", type=float, default=10.0)
    parser.add_argument("--slow-seconds", type=float, default=60.0)
    args = parser.parse_args()
    fast_interval = 0.05
    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bramble-bench-") as tmp:
        spec = write_spec(Path(tmp), random.randint(20000, 60000))

        # Phase 1: the agent and the reference loop at 20 Hz.
        agent = start_agent(spec, fast_interval)
        count = int((args.fast_seconds + 3) / fast_interval) + 40
        reference = subprocess.Popen(
            [sys.executable, "-S", "-c", REFERENCE, str(fast_interval), str(count)]
        )
        try:
            wait_lean(agent)
            time.sleep(1.0)
            fast = measure({"agent": agent.pid, "reference": reference.pid}, args.fast_seconds)
        finally:
            stop(agent)
            reference.kill()
            reference.wait()
        samples = args.fast_seconds / fast_interval
        for name, label in (("agent", "bramble agent"), ("reference", "bare sampler loop")):
            cpu, rss = fast[name]
            share = cpu / args.fast_seconds * 100
            rows.append(
                (label, "20 Hz", f"{cpu / samples * 1e3:.3f}", f"{share:.2f}", f"{rss / 1024:.1f}")
            )

        # Phase 2: the agent and gmond at 1 Hz, side by side.
        gmond_path = shutil.which("gmond") or "/usr/sbin/gmond"
        conf = Path(tmp) / "gmond.conf"
        moddir = next(iter(glob.glob("/usr/lib/*/ganglia")), "/usr/lib/ganglia")
        gmond_port = random.randint(20000, 60000)
        conf.write_text(GMOND_CONF.format(port=gmond_port, moddir=moddir))
        # Count what gmond sends, to be sure it collects and sends what it is measured for.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", gmond_port))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        agent = start_agent(spec, 1.0)
        gmond = subprocess.Popen(
            [gmond_path, "-c", str(conf), "-f"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_lean(agent)
            time.sleep(2.0)
            if gmond.poll() is not None:
                raise SystemExit(f"gmond exited with {gmond.returncode}")
            slow = measure({"agent": agent.pid, "gmond": gmond.pid}, args.slow_seconds)
        finally:
            stop(agent)
            stop(gmond)
        sink.setblocking(False)
        gmond_datagrams = 0
        with contextlib.suppress(BlockingIOError):
            while sink.recv(2048):
                gmond_datagrams += 1
        sink.close()
        for name, label in (("agent", "bramble agent"), ("gmond", "gmond (17 metrics)")):
            cpu, rss = slow[name]
            per = cpu / args.slow_seconds
            rows.append(
                (label, "1 Hz", f"{per * 1e3:.3f}", f"{per * 100:.3f}", f"{rss / 1024:.1f}")
            )

    header = ("process", "rate", "CPU ms/sample", "CPU %", "RSS MiB")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    ratio = slow["agent"][0] / slow["gmond"][0] if slow["gmond"][0] else float("inf")
    print(f"agent/gmond CPU at 1 Hz: {ratio:.2f}")
    print(f"gmond sent {gmond_datagrams} datagrams in {args.slow_seconds + 2:.0f} s")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}, cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
