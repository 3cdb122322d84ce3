"""Agent cost: CPU per sample and resident memory, beside bare sampler loops and gmond.

Runs the real `bramble agent` on loopback multicast, each way it can run: the compiled
agent from the wheel (this machine's wheel, installed with no extras into a fresh venv: the
program the wheel carries, linked to glibc), the compiled agent built on first start (this
checkout's `bramble`, building into a cache directory of its own) and the Python agent
(`--engine python`).

1. fast: both agents at 20 Hz, and two minimal reference samplers (a tiny C loop and a tiny
   Python loop, each reading the same files, no JSON, no signing, no socket), for the same
   wall time; CPU per sample.
2. 1 Hz side by side: both agents, the C reference loop and Ganglia's gmond (Debian
   ganglia-monitor, 17 metrics collected and sent every second to a loopback port).

The agents run as `bramble agent` does by default: every signal, and a process datagram
(every process's /proc/PID/stat read) every `--procs-every` intervals (30; 0: off). After
the 1 Hz phase's measured window (with no one listening, as before), a socket joins the
group for `--procs-every` + 2 s and counts the process datagrams the agents send, to be sure
they were measured with it.

CPU time is the kernel's exact on-CPU time of every thread (/proc/PID/task/*/schedstat),
not tick-sampled utime. Prints a table; about 2 minutes (the wheel is built first unless
given).

    python bench/agent.py [--fast-seconds 10] [--slow-seconds 60] [--wheel WHEEL]
                          [--procs-every 30]
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

REFERENCE_C = r"""
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    const char *names[] = {"/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/net/dev"};
    static char buf[65536];
    int fds[4];
    for (int i = 0; i < 4; i++) fds[i] = open(names[i], O_RDONLY);
    double interval = atof(argv[1]);
    struct itimerval t = {{(long)interval, (long)((interval - (long)interval) * 1e6)},
                          {(long)interval, (long)((interval - (long)interval) * 1e6)}};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    setitimer(ITIMER_REAL, &t, NULL);
    struct statvfs fs;
    for (int n = 0, sig; sigwait(&set, &sig) == 0; n++) {
        for (int i = 0; i < 4; i++) if (pread(fds[i], buf, sizeof buf, 0) < 0) return 1;
        if (n % 10 == 0) statvfs("/", &fs);
    }
    return 0;
}
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


def wheel_bramble(directory: Path, wheel: str | None) -> Path:
    """The `bramble` of a fresh venv in DIRECTORY holding WHEEL (default: this machine's
    wheel, built from a copy of this checkout), installed with no extras."""
    if wheel is None:
        tree = directory / "src"
        skip = shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
        )
        shutil.copytree(Path(__file__).resolve().parents[1], tree, ignore=skip)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(directory), tree],
            env={**os.environ, "BRAMBLE_AGENT_BUILD": "required"},
            check=True,
        )
        (built,) = directory.glob("bramble_cluster-*.whl")
        wheel = str(built)
    venv = directory / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", wheel], check=True)
    return venv / "bin" / "bramble"


def this_bramble() -> str:
    """This checkout's `bramble`: the one beside the Python running the bench (its venv's),
    else the first on PATH (which may be another installation's)."""
    beside = Path(sys.executable).with_name("bramble")
    return str(beside) if beside.exists() else shutil.which("bramble") or "bramble"


# How each measured agent is started: which `bramble` and which --engine. `no-procs` is the
# first-start compiled agent without process datagrams, beside the others: what they cost.
ENGINES = {"wheel": "compiled", "compiled": "compiled", "no-procs": "compiled", "python": "python"}


def start_agent(
    spec: Path, interval: float, name: str, bramble: dict[str, Path], procs_every: int
) -> subprocess.Popen[bytes]:
    """The real CLI; it execs the agent (compiled or lean Python), so the PID stays the
    agent's."""
    program = bramble.get(name) or this_bramble()
    every = 0 if name == "no-procs" else procs_every
    return subprocess.Popen(
        [program, "agent", "--spec", str(spec), "--interval", str(interval),
         "--engine", ENGINES[name], "--procs-every", str(every)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def group_receiver(port: int) -> socket.socket:
    """A socket joined to the agents' group on loopback, as a master there would be."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("224.0.0.251", port))
    membership = socket.inet_aton("224.0.0.251") + socket.inet_aton("127.0.0.1")
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> tuple[int, int]:
    """Datagrams waiting on SOCK: all of them, and the process datagrams among them."""
    total = procs = 0
    with contextlib.suppress(BlockingIOError):
        while data := sock.recv(2048):
            total += 1
            procs += b',"procs":[' in data
    return total, procs


def wait_started(proc: subprocess.Popen[bytes], name: str) -> None:
    """Wait until PROC has exec'd the agent of ENGINE."""
    compiled = ENGINES[name] == "compiled"
    mark = b"bramble-agent\0" if compiled else b"bramble.telemetry.agent"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        if cmdline.startswith(mark) if compiled else mark in cmdline:
            exe = os.readlink(f"/proc/{proc.pid}/exe")
            # The wheel's agent is the program in the venv's package, not a build.
            if (name == "wheel") != ("/site-packages/bramble/" in exe):
                raise SystemExit(f"the {name} agent runs {exe}")
            return
        if proc.poll() is not None:
            raise SystemExit(f"the {name} agent exited with {proc.returncode}")
        time.sleep(0.05)
    raise SystemExit(f"the {name} agent did not start")


def build_reference(directory: Path) -> Path:
    """The C reference loop, compiled with the same flags as the agent."""
    source = directory / "reference.c"
    source.write_text(REFERENCE_C)
    binary = directory / "reference"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


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
    parser.add_argument("--wheel", help="the wheel to install (default: build this machine's)")
    parser.add_argument("--procs-every", type=int, default=30, help="intervals (0: off)")
    args = parser.parse_args()
    fast_interval = 0.05
    rows: list[tuple[str, str, str, str, str]] = []
    labels = {
        "wheel": "bramble agent (compiled, from the wheel)",
        "compiled": "bramble agent (compiled on first start)",
        "no-procs": "the same, --procs-every 0",
        "python": "bramble agent (--engine python)",
        "c-reference": "bare C loop reading the same files",
        "py-reference": "bare Python loop reading the same files",
        "gmond": "gmond (17 metrics)",
    }

    def row(name: str, rate: str, cpu: float, rss: int, seconds: float, samples: float) -> None:
        share = cpu / seconds * 100
        rows.append(
            (labels[name], rate, f"{cpu / samples * 1e3:.3f}", f"{share:.3f}", f"{rss / 1024:.1f}")
        )

    with tempfile.TemporaryDirectory(prefix="bramble-bench-") as tmp:
        agent_port = random.randint(20000, 60000)
        spec = write_spec(Path(tmp), agent_port)
        reference_c = build_reference(Path(tmp))
        bramble = {"wheel": wheel_bramble(Path(tmp) / "wheel", args.wheel)}
        # The first-start build goes to a cache of its own, made before anything is measured.
        os.environ["BRAMBLE_CACHE_DIR"] = str(Path(tmp) / "cache")
        subprocess.run(
            [this_bramble(), "agent", "--prepare"],
            check=True,
            stdout=subprocess.DEVNULL,
        )

        # Phase 1: the agents and both reference loops at 20 Hz.
        agents = {
            e: start_agent(spec, fast_interval, e, bramble, args.procs_every) for e in ENGINES
        }
        # Killed when measured; enough samples to outlast a slow start of the agents.
        count = int((args.fast_seconds + 120) / fast_interval)
        others = {
            "c-reference": subprocess.Popen([str(reference_c), str(fast_interval)]),
            "py-reference": subprocess.Popen(
                [sys.executable, "-S", "-c", REFERENCE, str(fast_interval), str(count)]
            ),
        }
        try:
            for engine, proc in agents.items():
                wait_started(proc, engine)
            time.sleep(1.0)
            pids = {name: p.pid for name, p in {**agents, **others}.items()}
            fast = measure(pids, args.fast_seconds)
        finally:
            for proc in agents.values():
                stop(proc)
            for proc in others.values():
                proc.kill()
                proc.wait()
        for name, (cpu, rss) in fast.items():
            row(name, "20 Hz", cpu, rss, args.fast_seconds, args.fast_seconds / fast_interval)

        # Phase 2: both agents, the C reference loop and gmond at 1 Hz, side by side.
        gmond_path = shutil.which("gmond") or "/usr/sbin/gmond"
        conf = Path(tmp) / "gmond.conf"
        moddir = next(iter(glob.glob("/usr/lib/*/ganglia")), "/usr/lib/ganglia")
        gmond_port = random.randint(20000, 60000)
        conf.write_text(GMOND_CONF.format(port=gmond_port, moddir=moddir))
        # Count what gmond sends, to be sure it collects and sends what it is measured for.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", gmond_port))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        agents = {e: start_agent(spec, 1.0, e, bramble, args.procs_every) for e in ENGINES}
        others = {
            "c-reference": subprocess.Popen([str(reference_c), "1"]),
            "gmond": subprocess.Popen(
                [gmond_path, "-c", str(conf), "-f"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        }
        try:
            for engine, proc in agents.items():
                wait_started(proc, engine)
            time.sleep(2.0)
            if others["gmond"].poll() is not None:
                raise SystemExit(f"gmond exited with {others['gmond'].returncode}")
            pids = {name: p.pid for name, p in {**agents, **others}.items()}
            slow = measure(pids, args.slow_seconds)
            # Then listen (a member of the group costs the senders the loopback delivery).
            heard = group_receiver(agent_port)
            listened = args.procs_every + 2.0
            time.sleep(listened)
            agent_datagrams, procs_datagrams = drain(heard)
            heard.close()
        finally:
            for proc in [*agents.values(), others["gmond"]]:
                stop(proc)
            others["c-reference"].kill()
            others["c-reference"].wait()
        sink.setblocking(False)
        gmond_datagrams = 0
        with contextlib.suppress(BlockingIOError):
            while sink.recv(2048):
                gmond_datagrams += 1
        sink.close()
        for name, (cpu, rss) in slow.items():
            row(name, "1 Hz", cpu, rss, args.slow_seconds, args.slow_seconds)

    header = ("process", "rate", "CPU ms/sample", "CPU %", "RSS MiB")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for line in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    gmond_cpu = slow["gmond"][0]
    for name in ENGINES:
        ratio = slow[name][0] / gmond_cpu if gmond_cpu else float("inf")
        print(f"{labels[name]} / gmond CPU at 1 Hz: {ratio:.2f}")
    print(f"gmond sent {gmond_datagrams} datagrams in {args.slow_seconds + 2:.0f} s")
    print(
        f"the agents sent {agent_datagrams} datagrams in {listened:.0f} s after the measured "
        f"window, {procs_datagrams} of them process datagrams (--procs-every {args.procs_every})"
    )
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}, cores: {os.cpu_count()}")
    print(f"processes on the machine (each agent reads them all): {len(glob.glob('/proc/[0-9]*'))}")


if __name__ == "__main__":
    main()
