"""Read a node's /proc and /sys into a Sample.

The parsers are pure functions of text, tested on captured files. `Sampler` is the edge: it
keeps the files open and re-reads them with `os.pread`, which is the cheapest way to sample
every interval. A missing sensor (no cpufreq, no thermal zone) reads as 0, never an error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

from bramble.telemetry.wire import Sample

MEMINFO_KEYS = (
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapTotal",
    "SwapFree",
)
CPUFREQ_PATH = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"
THERMAL_PATH = "/sys/class/thermal/thermal_zone0/temp"


class CpuTimes(NamedTuple):
    """Busy and total jiffies for the whole machine and for each core."""

    total: tuple[int, int]
    cores: tuple[tuple[int, int], ...]


def _busy_total(fields: Sequence[str]) -> tuple[int, int]:
    values = [int(x) for x in fields[:8]]
    # idle and iowait are not busy; guest time is already counted in user.
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values)
    return total - idle, total


def parse_stat(text: str) -> CpuTimes:
    """CPU jiffies from /proc/stat text."""
    total = (0, 0)
    cores: list[tuple[int, int]] = []
    for line in text.splitlines():
        if not line.startswith("cpu"):
            break
        name, *fields = line.split()
        if name == "cpu":
            total = _busy_total(fields)
        else:
            cores.append(_busy_total(fields))
    return CpuTimes(total, tuple(cores))


def parse_btime(text: str) -> int:
    """Boot time (epoch seconds) from /proc/stat text; 0 when absent."""
    for line in text.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    return 0


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The busy fraction 0..1 between two (busy, total) readings."""
    total = after[1] - before[1]
    if total <= 0:
        return 0.0
    return min(1.0, max(0.0, (after[0] - before[0]) / total))


def parse_meminfo(text: str, keys: Sequence[str] = MEMINFO_KEYS) -> dict[str, int]:
    """The wanted /proc/meminfo fields, in kB."""
    wanted = set(keys)
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in wanted:
            out[name] = int(rest.split()[0])
    return {k: out[k] for k in keys if k in out}


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """1, 5 and 15 minute load from /proc/loadavg text."""
    a, b, c = text.split()[:3]
    return float(a), float(b), float(c)


def parse_uptime(text: str) -> float:
    """Seconds since boot from /proc/uptime text."""
    return float(text.split()[0])


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """Bytes received and sent per interface (loopback left out) from /proc/net/dev text."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        if not name or name == "lo":
            continue
        fields = rest.split()
        if len(fields) >= 9:
            out[name] = (int(fields[0]), int(fields[8]))
    return out


def parse_millidegrees(text: str) -> float:
    """A thermal zone reading in °C; 0 when unreadable."""
    try:
        return int(text.strip()) / 1000.0
    except ValueError:
        return 0.0


def parse_khz_as_mhz(text: str) -> int:
    """A cpufreq reading (kHz) in MHz; 0 when unreadable."""
    try:
        return int(text.strip()) // 1000
    except ValueError:
        return 0


class _File:
    """A file kept open and re-read from the start each time; empty text if it is missing."""

    __slots__ = ("fd", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd: int | None = os.open(path, os.O_RDONLY)
        except OSError:
            self.fd = None

    def read(self) -> str:
        if self.fd is None:
            return ""
        try:
            return os.pread(self.fd, 65536, 0).decode("ascii", "replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Sampler:
    """Samples this machine. Call `sample()` once per interval."""

    def __init__(
        self,
        proc: str = "/proc",
        cpufreq_path: str = CPUFREQ_PATH,
        thermal_path: str = THERMAL_PATH,
        disk_path: str = "/",
    ) -> None:
        self._stat = _File(f"{proc}/stat")
        self._meminfo = _File(f"{proc}/meminfo")
        self._loadavg = _File(f"{proc}/loadavg")
        self._uptime = _File(f"{proc}/uptime")
        self._netdev = _File(f"{proc}/net/dev")
        self._freq = _File(cpufreq_path)
        self._temp = _File(thermal_path)
        self._disk_path = disk_path
        stat = self._stat.read()
        self.boot = parse_btime(stat)
        # The first sample's CPU figures are averages since boot, as top's first screen is.
        first = parse_stat(stat)
        self._last = CpuTimes((0, 0), tuple((0, 0) for _ in first.cores))

    def sample(self) -> Sample:
        """Read everything once; CPU figures are over the time since the previous call."""
        now = parse_stat(self._stat.read())
        before = self._last
        self._last = now
        cores = tuple(
            round(busy_fraction(b, a), 3) for b, a in zip(before.cores, now.cores, strict=False)
        )
        try:
            fs = os.statvfs(self._disk_path)
            disk = {
                "total": fs.f_blocks * fs.f_frsize,
                "used": (fs.f_blocks - fs.f_bfree) * fs.f_frsize,
                "free": fs.f_bavail * fs.f_frsize,
            }
        except OSError:
            disk = {}
        uptime_text = self._uptime.read()
        return Sample(
            cpufreq=parse_khz_as_mhz(self._freq.read()),
            cputemp=parse_millidegrees(self._temp.read()),
            cpuusage=busy_fraction(before.total, now.total),
            loadavg=parse_loadavg(self._loadavg.read()),
            meminfo=parse_meminfo(self._meminfo.read()),
            cores=cores,
            disk=disk,
            net=parse_net_dev(self._netdev.read()),
            uptime=parse_uptime(uptime_text) if uptime_text else 0.0,
        )

    def close(self) -> None:
        """Close the kept files."""
        for f in (
            self._stat,
            self._meminfo,
            self._loadavg,
            self._uptime,
            self._netdev,
            self._freq,
            self._temp,
        ):
            f.close()
