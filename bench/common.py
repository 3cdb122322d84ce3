"""What the benchmark scripts share: a realistic sample and /proc readings of a process."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bramble.telemetry.wire import Sample

SAMPLE = Sample(
    cpufreq=1500,
    cputemp=51.2,
    cpuusage=0.37,
    loadavg=(0.61, 0.55, 0.49),
    meminfo={
        "MemTotal": 3884088, "MemFree": 2740512, "MemAvailable": 3311240, "Buffers": 61440,
        "Cached": 601236, "SwapTotal": 102396, "SwapFree": 102396,
    },
    cores=(0.41, 0.33, 0.38, 0.36),
    disk={"total": 31_000_000_000, "used": 4_200_000_000, "free": 25_500_000_000},
    net={"eth0": (123_456_789, 98_765_432)},
    uptime=86_400.0,
)  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process PID."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of PID in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# no node names in the spec: the benchmarks' senders are admitted because it says any may
ADMIT_ANY = 'interval = 1.0\nadmit = "any"'


def write_local_spec(
    state: Path, *, nodes: int = 0, telemetry: str = ADMIT_ANY, jobs: str = ""
) -> tuple[Path, str]:
    """A loopback spec (random ports) and its secrets in STATE: by default no nodes, admitting
    any; else NODES named node-1..., with TELEMETRY and JOBS lines for those tables.

    Returns the spec's path and the master's base URL.
    """
    import socket

    from bramble.demo import free_port, local_spec_text
    from bramble.init import secrets_text

    port = free_port()
    spec_path = state / "bramble.toml"
    spec_path.write_text(
        local_spec_text(
            nodes,
            port,
            free_port(socket.SOCK_DGRAM),
            state,
            telemetry=telemetry,
            jobs=jobs,
            # the benchmarks' senders enroll at once, over HTTPS on a port of their own
            extra=f"[enroll]\nper_minute = 100000\nport = {free_port()}",
        )
    )
    secrets = state / "bramble.secrets.toml"
    secrets.write_text(secrets_text())
    secrets.chmod(0o600)
    return spec_path, f"http://127.0.0.1:{port}"


def wait_ready(base: str, master: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    """Wait until the master at BASE answers; False if it exits or TIMEOUT passes first."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(base + "/api/stats", timeout=5).raise_for_status()
            return True
        except httpx.HTTPError:
            if time.monotonic() > deadline or master.poll() is not None:
                return False
            time.sleep(0.2)


def send_paced(
    spec_path: Path, nodes: int, seconds: float, sample: Callable[[int], Sample], seq0: int
) -> None:
    """One signed datagram per node per second, spread over the second, for SECONDS: node N
    (named sim-NNNN) sends SAMPLE(N), stamped with its send time, its seq counting from SEQ0."""
    from bramble.spec import load_secrets, load_spec
    from bramble.telemetry.encode import encode

    spec = load_spec(spec_path)
    secrets = load_secrets(spec_path)
    target = (str(spec.telemetry.group), spec.telemetry.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        begin = time.time()
        i = 0
        while (due := begin + i / nodes) <= begin + seconds:
            delay = due - time.time()
            if delay > 0.002:
                time.sleep(delay)
            node = i % nodes
            sock.sendto(
                encode(
                    sample(node), node=f"sim-{node:04d}", boot=1_700_000_000,
                    seq=seq0 + i // nodes, ts=time.time(), interval=1.0,
                    key=secrets.telemetry_key, key_id=secrets.telemetry_key_id,
                ),
                target,
            )  # fmt: skip
            i += 1
