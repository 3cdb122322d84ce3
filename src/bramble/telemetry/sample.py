"""Read a node's /proc and /sys into a Sample.

The parsers are pure functions of the files' bytes, tested on captured files. `Sampler` is the
edge: it keeps the files open and re-reads them with `os.pread`, which is the cheapest way to
sample every interval. A missing sensor (no cpufreq, no thermal zone) reads as 0, never an error.

The agent samples every second for months on small boards, and most of its cost is the
interpreter running cold code after each sleep, so each parser is a few whole-buffer passes
(`split`, `translate`, `map`) rather than a loop over lines.
"""

from __future__ import annotations

import os
import time

from bramble.telemetry.wire import Sample

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (2 MiB)
if TYPE_CHECKING:
    from collections.abc import Sequence

# In the kernel's order; every key the original dashboard reads is here (it shows 0 for one
# that is missing), and MemAvailable.
MEMINFO_KEYS = (
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "SwapTotal",
    "SwapFree",
)
CPUFREQ_PATH = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"
THERMAL_PATH = "/sys/class/thermal/thermal_zone0/temp"
DISK_EVERY = 10
# What both agents keep (the compiled one in 64 bits, on 32-bit boards too); a reading past
# it is refused on purpose, alike by both, as each parser says.
TOP = 2**63 - 1  # counts, times, sensor readings
COUNTER_TOP = 2**64 - 1  # network byte counters (the kernel's are 64-bit)
EXACT = 2**53  # jiffies of a cpu line: beyond, two totals' busy fraction is no longer exact


def stat_shape(data: bytes) -> tuple[int, int]:
    """How many cpu lines /proc/stat has (the machine's, then one per core) and how many
    fields (the name included) make each line: what `parse_stat` needs to read it."""
    lines = data.split(b"\n")
    count = 0
    while count < len(lines) and lines[count].startswith(b"cpu"):
        count += 1
    return count, len(lines[0].split()) if count else 0


def parse_stat(data: bytes, shape: tuple[int, int]) -> list[int]:
    """Total and idle jiffies of each cpu line of /proc/stat, flat: the machine's, then each
    core's. SHAPE is `stat_shape` of this kernel's /proc/stat; ValueError if it no longer fits
    (a core went on- or offline).

    Total is every field up to steal (guest time is already counted in user); idle includes
    iowait. A line of 2^53 jiffies or more is refused (ValueError) as not the /proc/stat we
    know: the compiled agent computes busy fractions exactly only below that.
    """
    count, width = shape
    if not count:
        return []
    end = count * width
    # The cpu lines come first; the rest (the long intr line above all) is never split.
    fields = data.split(None, end)
    if len(fields) > end and not fields[end].startswith(b"intr"):
        raise ValueError("the cpu lines of /proc/stat changed")
    used = min(width - 1, 8)  # user .. steal; kernels before 2.6.11 have fewer fields
    out = []
    for at in range(1, end, width):
        out.append(sum(map(int, fields[at : at + used])))
        out.append(int(fields[at + 3]) + int(fields[at + 4]) if used > 4 else int(fields[at + 3]))
    if max(out) >= EXACT:
        raise ValueError("a cpu line of /proc/stat counts 2^53 jiffies or more")
    return out


def parse_btime(data: bytes) -> int:
    """Boot time (epoch seconds) from /proc/stat; 0 when absent, or not a number within
    +-(2^63 - 1)."""
    start = data.find(b"\nbtime ")
    if start == -1:
        return 0
    try:
        value = int(data[start + 7 :].split(None, 1)[0])
    except (ValueError, IndexError):
        return 0
    return value if -TOP <= value <= TOP else 0


def busy_fractions(before: Sequence[int], after: Sequence[int]) -> list[float]:
    """The busy fraction 0..1 of each cpu line between two `parse_stat` readings: the
    machine's first, then each core's. No time passed reads as 0."""
    fractions = []
    for i in range(0, len(after), 2):
        total = after[i] - before[i]
        busy = total - after[i + 1] + before[i + 1]
        if 0 <= busy <= total and total:
            fractions.append(busy / total)
        else:  # counters that went back (iowait can), or no tick passed
            fractions.append(1.0 if busy > total > 0 else 0.0)
    return fractions


def parse_meminfo(data: bytes, keys: Sequence[str] = MEMINFO_KEYS) -> dict[str, int]:
    """The wanted /proc/meminfo fields, in kB.

    Kernels before 3.14 (early Raspberry Pi images) have no MemAvailable; it is then
    estimated as MemFree + Buffers + Cached, as `free` did on those kernels. A value past
    2^63 - 1 is left out, and the estimate stops there.
    """
    out: dict[str, int] = {}
    data = b"\n" + data
    for key in keys:
        # Finding a few known names beats splitting fifty lines.
        start = data.find(f"\n{key}:".encode())
        if start != -1:
            fields = data[start + len(key) + 2 :].split(None, 1)
            if fields and fields[0].isdigit() and int(fields[0]) <= TOP:
                out[key] = int(fields[0])
    if "MemAvailable" in keys and "MemAvailable" not in out and "MemFree" in out:
        estimate = min(out["MemFree"] + out.get("Buffers", 0) + out.get("Cached", 0), TOP)
        out = {
            k: estimate if k == "MemAvailable" else out[k]
            for k in keys
            if k in out or k == "MemAvailable"
        }
    return out


def meminfo_layout(data: bytes) -> tuple[int, ...] | None:
    """Where the MEMINFO_KEYS values sit among the whitespace-separated words of this
    kernel's /proc/meminfo (its lines never change while it runs); None if one is missing."""
    words = data.split()
    names = [f"{key}:".encode() for key in MEMINFO_KEYS]
    if not all(name in words for name in names):
        return None
    return tuple([words.index(name) + 1 for name in names])


def parse_meminfo_at(data: bytes, layout: tuple[int, ...]) -> dict[str, int]:
    """The MEMINFO_KEYS fields of /proc/meminfo, in kB, read at `meminfo_layout`'s places;
    ValueError when one is not what `parse_meminfo` would keep."""
    words = data.split()
    fields = [words[at] for at in layout]
    values = list(map(int, fields))
    if max(values) > TOP or not b"".join(fields).isdigit():
        raise ValueError("a /proc/meminfo value parse_meminfo would leave out")
    return dict(zip(MEMINFO_KEYS, values, strict=True))


def parse_loadavg(data: bytes) -> tuple[float, float, float]:
    """1, 5 and 15 minute load from /proc/loadavg; zeros when unreadable, or not finite."""
    try:
        words = data.split()
        one, five, fifteen = float(words[0]), float(words[1]), float(words[2])
    except (ValueError, IndexError):
        return 0.0, 0.0, 0.0
    if (one - one) + (five - five) + (fifteen - fifteen) != 0.0:  # nan or inf
        return 0.0, 0.0, 0.0
    return one, five, fifteen


def parse_uptime(data: bytes) -> float:
    """Seconds since boot from /proc/uptime; 0 when unreadable, or not finite."""
    try:
        seconds = float(data.split(None, 1)[0])
    except (ValueError, IndexError):
        return 0.0
    return seconds if seconds - seconds == 0.0 else 0.0


_NET_WIDTH = 17  # the name, 8 receive counters (bytes first), 8 transmit counters (bytes first)


def parse_net_dev(data: bytes) -> dict[str, tuple[int, int]]:
    """Bytes received and sent per interface (loopback left out) from /proc/net/dev. An
    interface whose name is not UTF-8 (it cannot be sent in JSON), or whose counters are
    not numbers within 0 .. 2^64 - 1, is left out."""
    words = data[data.find(b"\n", data.find(b"\n") + 1) + 1 :].split()  # past 2 headings
    out = {}
    for at in range(0, len(words), _NET_WIDTH):
        name = words[at]
        if name[-1:] != b":" or len(words) % _NET_WIDTH:  # old kernels: "eth0:123"
            return _parse_net_dev_lines(data)
        if name != b"lo:":
            try:  # UnicodeDecodeError is a ValueError
                rx, tx = int(words[at + 1]), int(words[at + 9])
                if 0 <= rx <= COUNTER_TOP and 0 <= tx <= COUNTER_TOP:
                    out[name[:-1].decode()] = (rx, tx)
            except ValueError:
                continue
    return out


def _parse_net_dev_lines(data: bytes) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for line in data.split(b"\n")[2:]:
        name, _, rest = line.partition(b":")
        fields = rest.split(None, 9)  # rx bytes first, tx bytes ninth
        name = name.strip()
        if name and name != b"lo" and len(fields) >= 9:
            try:
                rx, tx = int(fields[0]), int(fields[8])
                if 0 <= rx <= COUNTER_TOP and 0 <= tx <= COUNTER_TOP:
                    out[name.decode()] = (rx, tx)
            except ValueError:
                continue
    return out


def parse_millidegrees(data: bytes) -> float:
    """A thermal zone reading in °C; 0 when unreadable, or past +-(2^63 - 1)."""
    try:
        milli = int(data)
    except ValueError:
        return 0.0
    return milli / 1000.0 if -TOP <= milli <= TOP else 0.0


def parse_khz_as_mhz(data: bytes) -> int:
    """A cpufreq reading (kHz) in MHz; 0 when unreadable, or past +-(2^63 - 1)."""
    try:
        khz = int(data)
    except ValueError:
        return 0
    return khz // 1000 if -TOP <= khz <= TOP else 0


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


def _open(path: str, missing: int | None = None) -> int:
    # A missing /proc file reads as empty, and the parsers make zeros of that: /dev/null
    # keeps the sampling path free of checks.
    try:
        return os.open(path, os.O_RDONLY)
    except OSError:
        return os.open(os.devnull, os.O_RDONLY) if missing is None else missing


def _read_all(fd: int) -> bytes:
    try:
        data = os.pread(fd, 65536, 0)
        while len(data) % 65536 == 0 and data:  # a very large /proc/stat
            more = os.pread(fd, 65536, len(data))
            if not more:
                break
            data += more
    except OSError:
        return b""
    return data


class Sampler:
    """Samples this machine. Call `sample()` once per interval."""

    def __init__(
        self,
        proc: str = "/proc",
        cpufreq_path: str = CPUFREQ_PATH,
        thermal_path: str = THERMAL_PATH,
        disk_path: str = "/",
    ) -> None:
        self._stat = _open(f"{proc}/stat")
        self._meminfo = _open(f"{proc}/meminfo")
        self._loadavg = _open(f"{proc}/loadavg")
        self._netdev = _open(f"{proc}/net/dev")
        # This machine's uptime is a clock read, no file; another /proc tree has its own file.
        self._uptime = _open(f"{proc}/uptime") if proc != "/proc" else -1
        # A sensor missing at start stays missing: no read at all, every interval.
        self._freq = _open(cpufreq_path, missing=-1)
        self._temp = _open(thermal_path, missing=-1)
        self._disk_path = disk_path
        self._disk: dict[str, int] = {}
        self._samples = 0
        stat = _read_all(self._stat)
        self.boot = parse_btime(stat)
        self._stat_shape = stat_shape(stat)
        self._stat_size = max(65536, 2 * len(stat))  # the cpu lines always within one read
        # The first sample's CPU figures are averages since boot, as top's first screen is.
        try:
            first = parse_stat(stat, self._stat_shape)
        except (ValueError, IndexError):  # not the /proc/stat we know: no CPU figures
            self._stat_shape, first = (0, 1), []
        self._last = [0] * len(first)
        meminfo = _read_all(self._meminfo)
        self._meminfo_layout = meminfo_layout(meminfo)
        # Read /proc/meminfo only as far as the wanted lines, and a margin for longer numbers.
        ends = [meminfo.find(b"\n", meminfo.find(f"{key}:".encode())) for key in MEMINFO_KEYS]
        self._meminfo_size = 65536 if self._meminfo_layout is None else max(ends) + 256

    def sample(self) -> Sample:
        """Read everything once; CPU figures are over the time since the previous call."""
        pread = os.pread
        stat = pread(self._stat, self._stat_size, 0)
        meminfo = pread(self._meminfo, self._meminfo_size, 0)
        layout = self._meminfo_layout
        try:
            now = parse_stat(stat, self._stat_shape)
            mem = parse_meminfo(meminfo) if layout is None else parse_meminfo_at(meminfo, layout)
        except (ValueError, IndexError):  # a core went on- or offline; a very long file
            return self._sample_again()
        before = self._last
        self._last = now
        cpu = busy_fractions(before, now)
        self._samples += 1
        if self._samples % DISK_EVERY == 1:  # disk use moves slowly; spare the syscall
            self._disk = read_disk(self._disk_path)
        return Sample(
            parse_khz_as_mhz(pread(self._freq, 32, 0)) if self._freq != -1 else 0,
            parse_millidegrees(pread(self._temp, 32, 0)) if self._temp != -1 else 0.0,
            cpu[0] if cpu else 0.0,
            parse_loadavg(pread(self._loadavg, 128, 0)),
            mem,
            tuple(cpu[1:]),
            self._disk,
            parse_net_dev(_read_all(self._netdev)),  # whole: a host of many interfaces
            (
                time.clock_gettime(time.CLOCK_BOOTTIME)
                if self._uptime == -1
                else parse_uptime(pread(self._uptime, 128, 0))
            ),
        )

    def _sample_again(self) -> Sample:
        # The files no longer look as they did at start: learn their shape again.
        stat = _read_all(self._stat)
        self._stat_size = max(65536, 2 * len(stat))
        shape = stat_shape(stat)
        try:
            now = parse_stat(stat, shape)
        except (ValueError, IndexError):  # not the /proc/stat we know: no CPU figures
            shape, now = (0, 1), []
        if shape != self._stat_shape:
            self._stat_shape = shape
            self._last = [0] * len(now)
        self._meminfo_layout = None
        self._meminfo_size = 65536
        return self.sample()

    def close(self) -> None:
        """Close the kept files."""
        for fd in (
            self._stat,
            self._meminfo,
            self._loadavg,
            self._netdev,
            self._uptime,
            self._freq,
            self._temp,
        ):
            if fd != -1:
                os.close(fd)
        self._stat = self._meminfo = self._loadavg = self._netdev = -1
        self._uptime = self._freq = self._temp = -1
