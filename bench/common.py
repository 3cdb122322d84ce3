"""What the benchmark scripts share: a realistic sample and /proc readings of a process."""

from __future__ import annotations

import os
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
