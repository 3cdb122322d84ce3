"""Read a node's /proc and /sys into a Sample.

The parsers are pure functions of text, tested on captured files. `Sampler` is the edge: it
keeps the files open and re-reads them with `os.pread`, which is the cheapest way to sample
every interval. A missing sensor (no cpufreq, no thermal zone) reads as 0, never an error.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple

from bramble.telemetry.wire import Sample

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (2 MiB)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NamedTuple

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


if TYPE_CHECKING:

    class CpuTimes(NamedTuple):
        """Busy and total jiffies for the whole machine and for each core."""

        total: tuple[int, int]
        cores: tuple[tuple[int, int], ...]

else:  # without importing `typing` into the agent
    CpuTimes = namedtuple("CpuTimes", "total cores")
    CpuTimes.__doc__ = "Busy and total jiffies for the whole machine and for each core."


def _busy_total(fields: Sequence[str]) -> tuple[int, int]:
    values = list(map(int, fields[:8]))
    # idle and iowait are not busy; guest time is already counted in user.
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values)
    return total - idle, total


def parse_stat(text: str) -> CpuTimes:
    """CPU jiffies from /proc/stat text."""
    total = (0, 0)
    cores: list[tuple[int, int]] = []
    # The cpu lines come first; the rest (the long intr line above all) is never split.
    for line in text.split("\nintr", 1)[0].splitlines():
        if not line.startswith("cpu"):
            break
        name, *fields = line.split(None, 9)  # the guest fields are never needed
        if len(fields) < 4:
            continue
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
    """The wanted /proc/meminfo fields, in kB.

    Kernels before 3.14 (early Raspberry Pi images) have no MemAvailable; it is then
    estimated as MemFree + Buffers + Cached, as `free` did on those kernels.
    """
    text = "\n" + text
    out: dict[str, int] = {}
    for key in keys:
        # Finding a few known names beats splitting fifty lines, every interval.
        start = text.find(f"\n{key}:")
        if start == -1:
            continue
        start += len(key) + 2
        end = text.find("\n", start)
        fields = text[start : end if end != -1 else len(text)].split()
        if fields and fields[0].isdigit():
            out[key] = int(fields[0])
    if "MemAvailable" in keys and "MemAvailable" not in out and "MemFree" in out:
        estimate = out["MemFree"] + out.get("Buffers", 0) + out.get("Cached", 0)
        out = {
            k: estimate if k == "MemAvailable" else out[k]
            for k in keys
            if k in out or k == "MemAvailable"
        }
    return out


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """1, 5 and 15 minute load from /proc/loadavg text; zeros when unreadable."""
    try:
        a, b, c = text.split()[:3]
        return float(a), float(b), float(c)
    except ValueError:
        return 0.0, 0.0, 0.0


def parse_uptime(text: str) -> float:
    """Seconds since boot from /proc/uptime text; 0 when unreadable."""
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return 0.0


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """Bytes received and sent per interface (loopback left out) from /proc/net/dev text."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        if not name or name == "lo":
            continue
        fields = rest.split(None, 9)  # rx bytes first, tx bytes ninth
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


DISK_EVERY = 10


def read_disk(path: str) -> dict[str, int]:
    """Total, used and free bytes of the filesystem holding PATH; empty if unreadable."""
    try:
        fs = os.statvfs(path)
    except OSError:
        return {}
    return {
        "total": fs.f_blocks * fs.f_frsize,
        "used": (fs.f_blocks - fs.f_bfree) * fs.f_frsize,
        "free": fs.f_bavail * fs.f_frsize,
    }


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
            data = os.pread(self.fd, 65536, 0)
            while len(data) % 65536 == 0 and data:  # a very large /proc/stat: read it all
                more = os.pread(self.fd, 65536, len(data))
                if not more:
                    break
                data += more
        except OSError:
            return ""
        return data.decode("ascii", "replace")

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
        # This machine's uptime is a clock read, no file; another /proc tree has its own file.
        self._uptime = _File(f"{proc}/uptime") if proc != "/proc" else None
        self._netdev = _File(f"{proc}/net/dev")
        self._freq = _File(cpufreq_path)
        self._temp = _File(thermal_path)
        self._disk_path = disk_path
        self._disk: dict[str, int] = {}
        self._samples = 0
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
        cores = tuple([busy_fraction(b, a) for b, a in zip(before.cores, now.cores, strict=False)])
        self._samples += 1
        if self._samples % DISK_EVERY == 1:  # disk use moves slowly; spare the syscall
            self._disk = read_disk(self._disk_path)
        disk = self._disk
        return Sample(
            cpufreq=parse_khz_as_mhz(self._freq.read()),
            cputemp=parse_millidegrees(self._temp.read()),
            cpuusage=busy_fraction(before.total, now.total),
            loadavg=parse_loadavg(self._loadavg.read()),
            meminfo=parse_meminfo(self._meminfo.read()),
            cores=cores,
            disk=disk,
            net=parse_net_dev(self._netdev.read()),
            uptime=(
                parse_uptime(self._uptime.read())
                if self._uptime is not None
                else time.clock_gettime(time.CLOCK_BOOTTIME)
            ),
        )

    def close(self) -> None:
        """Close the kept files."""
        for f in (
            self._stat,
            self._meminfo,
            self._loadavg,
            self._netdev,
            self._freq,
            self._temp,
        ):
            f.close()
        if self._uptime is not None:
            self._uptime.close()
