"""Read a node's /proc and /sys into a Sample.

The parsers are pure functions of the files' bytes, tested on captured files. `Sampler` is the
edge: it keeps the files open and re-reads them with `os.pread`, which is the cheapest way to
sample every interval. A missing sensor (no cpufreq, no thermal zone) reads as 0, never an error;
the signals added later (firmware flags, board model, swap and disk I/O counters, filesystems)
read as absent (None, or left out) where the board lacks them.

The agent samples every second for months on small boards, and most of its cost is the
interpreter running cold code after each sleep, so each parser is a few whole-buffer passes
(`split`, `translate`, `map`) rather than a loop over lines.
"""

from __future__ import annotations

import os
import time

from bramble.telemetry.wire import (
    MAX_FS,
    MAX_MODEL,
    MAX_MOUNT,
    MAX_PID,
    MAX_PROC_CPU,
    MAX_PROC_NAME,
    MAX_PROCS_READ,
    TOP_PROCS,
    Proc,
    Sample,
)

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
# The Raspberry Pi firmware driver's flags (raspberrypi.c: "%x\n"): where Raspberry Pi OS
# has them, else under the first `devices/platform/<bus>/<bus>:firmware/` that has them.
THROTTLED_PATH = "devices/platform/soc/soc:firmware/get_throttled"
# Filesystems on a block device; network, virtual and memory filesystems are left out
# (statvfs of a dead NFS server would hang the agent).
REAL_FS = frozenset([b"ext2", b"ext3", b"ext4", b"vfat", b"exfat", b"btrfs", b"xfs", b"f2fs"])
MAX_SEEN = 64  # real mounts looked at in the mount table: a bound on each pass
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


def _clean(text: bytes, limit: int, space: bool) -> str | None:
    """TEXT as a str if it is 1..LIMIT printable ASCII characters without a quote or a
    backslash (nor a space unless SPACE): what both agents send without escaping."""
    if not 0 < len(text) <= limit:
        return None
    for c in text:
        if c < 0x20 or c > 0x7E or c == 0x22 or c == 0x5C or (c == 0x20 and not space):
            return None
    return text.decode("ascii")


def parse_model(data: bytes) -> str | None:
    """The board model from the device tree's `model` (NUL-terminated); None when there is
    none, or it is not 1..MAX_MODEL printable ASCII characters."""
    return _clean(data.rstrip(b"\0").strip(b" \t\n\r\v\f"), MAX_MODEL, True)


def parse_throttled(data: bytes) -> int | None:
    """The firmware's throttling flags from get_throttled (hex, as the kernel prints them,
    whitespace around); None unless 1 to 8 hex digits."""
    word = data.strip(b" \t\n\r\v\f")
    if not 0 < len(word) <= 8 or word.strip(b"0123456789abcdefABCDEF"):
        return None
    return int(word, 16)


def _counter(data: bytes, name: bytes) -> int | None:
    start = data.find(name)
    if start == -1:
        return None
    word = data[start + len(name) :].split(None, 1)
    if not word or not word[0].isdigit() or not word[0].isascii():
        return None
    value = int(word[0])
    return value if value <= COUNTER_TOP else None


def parse_vmstat(data: bytes) -> tuple[int, int] | None:
    """Pages swapped in and out since boot (pswpin, pswpout) from /proc/vmstat; None when
    either is missing or not a count within 0 .. 2^64 - 1."""
    data = b"\n" + data
    swap_in = _counter(data, b"\npswpin ")
    swap_out = _counter(data, b"\npswpout ")
    return None if swap_in is None or swap_out is None else (swap_in, swap_out)


def parse_diskstats(data: bytes, device: tuple[int, int]) -> tuple[int, int] | None:
    """Bytes read and written since boot by DEVICE (major, minor) from /proc/diskstats
    (sectors of 512 bytes, whatever the disk's own); None when it has no line, or a count
    is not a number whose bytes fit in 0 .. 2^64 - 1."""
    key = b"%d %d " % device
    for line in data.split(b"\n"):
        words = line.split()
        if len(words) < 10 or b"%s %s " % (words[0], words[1]) != key:
            continue
        return _sectors_as_bytes(words[5], words[9])
    return None


def parse_block_stat(data: bytes) -> tuple[int, int] | None:
    """The same counts from the device's own /sys/dev/block/MAJOR:MINOR/stat (the fields of
    its /proc/diskstats line after the name, kept by the same kernel counters): one device's
    line instead of every device's."""
    words = data.split(b"\n", 1)[0].split()
    return _sectors_as_bytes(words[2], words[6]) if len(words) >= 7 else None


def _sectors_as_bytes(read: bytes, written: bytes) -> tuple[int, int] | None:
    if not (read.isdigit() and written.isdigit() and (read + written).isascii()):
        return None
    reads, writes = int(read) * 512, int(written) * 512
    return (reads, writes) if max(reads, writes) <= COUNTER_TOP else None


def _device(text: bytes) -> tuple[int, int] | None:
    major, colon, minor = text.partition(b":")
    if not (colon and major.isdigit() and minor.isdigit() and (major + minor).isascii()):
        return None
    if len(major) > 9 or len(minor) > 9:
        return None
    return int(major), int(minor)


def parse_mountinfo(data: bytes) -> tuple[tuple[int, int] | None, list[tuple[str, bytes]]]:
    """From /proc/self/mountinfo: the root filesystem's device (major, minor; None when it
    has none, as an overlay or a btrfs subvolume), and the real filesystems to measure:
    mount point and device text of each, in the table's order, one per device, at most
    MAX_SEEN looked at. A mount point that is not plain printable ASCII of at most
    MAX_MOUNT characters (the kernel writes a space as \\040) is left out."""
    root: tuple[int, int] | None = None
    mounts: list[tuple[str, bytes]] = []
    seen: list[bytes] = []
    for line in data.split(b"\n"):
        words = line.split(b" ")
        if len(words) < 10:
            continue
        try:
            dash = words.index(b"-", 6)
        except ValueError:
            continue
        if dash + 1 >= len(words):
            continue
        device, point, kind = words[2], words[4], words[dash + 1]
        if point == b"/":
            found = _device(device)
            root = found if found is not None and found[0] != 0 else None
        if kind not in REAL_FS or len(seen) == MAX_SEEN or device in seen:
            continue
        seen.append(device)
        name = _clean(point, MAX_MOUNT, False)
        if name is not None:
            mounts.append((name, device))
    return root, mounts


def read_fs(
    mounts: Sequence[tuple[str, bytes]], prefix: str = ""
) -> dict[str, tuple[int, int, int]]:
    """Total, used and free bytes of each mount point (under PREFIX) that statvfs reads and
    that has a size, the first MAX_FS of them."""
    out: dict[str, tuple[int, int, int]] = {}
    for point, _device_text in mounts:
        if len(out) == MAX_FS:
            break
        try:
            fs = os.statvfs(prefix + point)
        except OSError:
            continue
        if fs.f_blocks <= 0 or fs.f_bfree > fs.f_blocks or fs.f_bavail > fs.f_blocks:
            continue  # no size (a pseudo filesystem), or counts that cannot be
        total = fs.f_blocks * fs.f_frsize
        if total <= COUNTER_TOP:
            used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
            out[point] = (total, used, fs.f_bavail * fs.f_frsize)
    return out


def proc_name(raw: bytes) -> str:
    """A process name (its comm, the bytes between the first '(' and the last ')' of
    /proc/PID/stat) as both agents send it: its first MAX_PROC_NAME bytes; if they are UTF-8,
    each control character (C0, DEL, C1) made '?'; if not, each byte outside printable
    ASCII made '?'."""
    raw = raw[:MAX_PROC_NAME]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.translate(_ASCII_ONLY).decode("ascii")
    if text.isascii() and text.isprintable():
        return text
    return "".join(["?" if c < " " or "\x7f" <= c < "\xa0" else c for c in text])


_ASCII_ONLY = bytes([c if 0x20 <= c < 0x7F else 0x3F for c in range(256)])


def parse_proc_stat(data: bytes) -> tuple[str, int, int, int] | None:
    """Name, CPU time (utime + stime, in clock ticks), start time (ticks after boot) and
    resident pages of one /proc/PID/stat; None when it is not that (fields that are not
    plain digits, or past 2^63 - 1)."""
    start = data.find(b"(")
    end = data.rfind(b")")
    if start == -1 or end < start:
        return None
    fields = data[end + 1 :].split(None, 23)
    if len(fields) < 22:
        return None
    utime, stime, started, rss = fields[11], fields[12], fields[19], fields[21]
    if not (utime + stime + started + rss).isdigit():  # ASCII digits (bytes)
        return None
    ticks, begun, pages = int(utime) + int(stime), int(started), int(rss)
    if max(int(utime), int(stime), begun, pages) > TOP:
        return None
    return proc_name(data[start + 1 : end]), ticks, begun, pages


def top_procs(rows: Sequence[tuple[str, int, int, int]], total: int, cores: int) -> list[Proc]:
    """The busiest TOP_PROCS processes (CPU ticks used in the round, more than 0) then the
    TOP_PROCS largest (resident bytes, more than 0) not among them; ties by pid. ROWS are
    (name, pid, ticks used, resident bytes); TOTAL the machine's jiffies in the round over
    CORES cores: a process's CPU % is of one core."""
    busy = sorted([r for r in rows if r[2] > 0], key=lambda r: (-r[2], r[1]))[:TOP_PROCS]
    large = sorted([r for r in rows if r[3] > 0], key=lambda r: (-r[3], r[1]))[:TOP_PROCS]
    chosen = busy + [r for r in large if r not in busy]
    out = []
    for name, pid, used, rss in chosen:
        share = 100 * used * cores
        if total <= 0:
            cpu = 0.0
        elif share >= EXACT:
            cpu = MAX_PROC_CPU
        else:
            cpu = min(share / total, MAX_PROC_CPU)
        out.append(Proc(name, pid, cpu, rss))
    return out


def _pid(name: str) -> int:
    """The pid a /proc entry names (digits without a leading zero, at most MAX_PID), or 0."""
    if not name.isdigit() or not name.isascii() or name[0] == "0" or len(name) > 7:
        return 0
    pid = int(name)
    return pid if pid <= MAX_PID else 0


MAX_KEPT = 512
"""Process stat files kept open between rounds at most (well within the open file limit)."""


class ProcReader:
    """Reads every process's /proc/PID/stat once a round; each round after the first gives
    the top processes by CPU over the round and by memory (`top_procs`).

    A process's stat file stays open from one round to the next (a pread costs a third of an
    open, a read and a close); once its process has ended the read fails, and the file is
    opened again (a new process of the same pid is another file)."""

    def __init__(self, proc: str = "/proc", page_size: int = 0) -> None:
        self._proc = proc
        self._page = page_size or os.sysconf("SC_PAGE_SIZE")
        self._last: dict[int, tuple[int, int]] | None = None  # pid: (start, ticks)
        self._last_total = 0
        self._fds: dict[int, int] = {}

    def close(self) -> None:
        """Close the files kept open."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def read(self, total: int, cores: int) -> list[Proc] | None:
        """One round, TOTAL the machine's jiffies now (/proc/stat's cpu line) over CORES
        cores; None for the first (there is nothing to compare with yet)."""
        seen: dict[int, tuple[int, int]] = {}
        rows = []
        last = self._last
        page = self._page
        proc = self._proc
        old, fds = self._fds, dict[int, int]()
        pread = os.pread
        try:
            names = os.listdir(proc)
        except OSError:
            names = []
        count = 0
        for name in names:
            pid = _pid(name)
            if not pid:
                continue
            if count == MAX_PROCS_READ:
                break
            count += 1
            fd = old.pop(pid, -1)
            if fd != -1:
                try:
                    data = pread(fd, 4096, 0)
                except OSError:
                    data = b""
                if not data:
                    os.close(fd)
                    fd = -1
            if fd == -1:
                try:
                    fd = os.open(f"{proc}/{name}/stat", os.O_RDONLY)
                except OSError:  # it has ended
                    continue
                try:
                    data = pread(fd, 4096, 0)
                except OSError:
                    data = b""
            parsed = parse_proc_stat(data)
            if parsed is None or len(fds) == MAX_KEPT:
                os.close(fd)
            else:
                fds[pid] = fd
            if parsed is None:
                continue
            proc_name_, ticks, started, pages = parsed
            seen[pid] = (started, ticks)
            before = last.get(pid) if last is not None else None
            used = ticks - before[1] if before is not None and before[0] == started else ticks
            rss = pages * page
            rows.append((proc_name_, pid, max(used, 0), rss if rss <= TOP else 0))
        for fd in old.values():  # processes that have ended, or were not read
            os.close(fd)
        self._fds = fds
        first = last is None
        span = total - self._last_total
        self._last, self._last_total = seen, total
        if first:
            return None
        return top_procs(rows, span, max(cores, 1))


def open_throttled(sysfs: str) -> int:
    """The firmware's get_throttled under SYSFS, opened; -1 on a board without it."""
    paths = [f"{sysfs}/{THROTTLED_PATH}"]
    platform = f"{sysfs}/devices/platform"
    try:
        buses = sorted(os.listdir(platform))[:256]
    except OSError:
        buses = []
    paths += [f"{platform}/{bus}/{bus}:firmware/get_throttled" for bus in buses if bus[0] != "."]
    for path in paths:
        fd = _open(path, missing=-1)
        if fd != -1:
            return fd
    return -1


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


def _read_some(fd: int, size: int) -> bytes:
    try:
        return os.pread(fd, size, 0)
    except OSError:  # a device gone: as the compiled agent, an empty read
        return b""


class Sampler:
    """Samples this machine. Call `sample()` once per interval."""

    def __init__(
        self,
        proc: str = "/proc",
        cpufreq_path: str = CPUFREQ_PATH,
        thermal_path: str = THERMAL_PATH,
        disk_path: str = "/",
        sysfs: str = "/sys",
        fs_root: str = "",
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
        # What a board lacks (no firmware flags off a Raspberry Pi, no swap counters in a
        # container) is never read and never sent, rather than sent as 0.
        self._throttled = open_throttled(sysfs)
        self._vmstat = _open(f"{proc}/vmstat", missing=-1)
        self._diskstats = _open(f"{proc}/diskstats", missing=-1)
        self._mountinfo = _open(f"{proc}/self/mountinfo", missing=-1)
        self._fs_root = fs_root
        self._root_device: tuple[int, int] | None = None
        # The root device's /sys/dev/block/M:m/stat (-1: none, /proc/diskstats is read),
        # looked for once for each device the root is on.
        self._sysfs = sysfs
        self._block_stat = -1
        self._block_device: tuple[int, int] | None = None
        self._fs: dict[str, tuple[int, int, int]] = {}
        model = _open(f"{proc}/device-tree/model", missing=-1)
        self.model = parse_model(_read_all(model)) if model != -1 else None
        if model != -1:
            os.close(model)
        self._samples = 0
        self.jiffies = self.cores = 0
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
        # what a process's CPU share is measured against (ProcReader): all cores' jiffies
        self.jiffies, self.cores = (now[0], len(now) // 2 - 1) if now else (0, 0)
        cpu = busy_fractions(before, now)
        self._samples += 1
        if self._samples % DISK_EVERY == 1:  # disk use moves slowly; spare the syscall
            self._disk = read_disk(self._disk_path)
            if self._mountinfo != -1:  # mounts come and go (a USB disk)
                self._root_device, mounts = parse_mountinfo(_read_all(self._mountinfo))
                self._fs = read_fs(mounts, self._fs_root)
                self._open_block_stat()
        diskio = None
        if self._root_device is not None and self._block_stat != -1:
            diskio = parse_block_stat(_read_some(self._block_stat, 512))
        elif self._diskstats != -1 and self._root_device is not None:
            diskio = parse_diskstats(_read_all(self._diskstats), self._root_device)
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
            self.model,
            parse_throttled(pread(self._throttled, 32, 0)) if self._throttled != -1 else None,
            # Without swap (SwapTotal 0 kB) there is no swap traffic: /proc/vmstat, the
            # dearest file of the interval, is read again from the first sample after swapon.
            (
                parse_vmstat(_read_all(self._vmstat))
                if self._vmstat != -1 and mem.get("SwapTotal") != 0
                else None
            ),
            diskio,
            self._fs,
        )

    def _open_block_stat(self) -> None:
        device = self._root_device
        if device is None or device == self._block_device:
            return
        if self._block_stat != -1:
            os.close(self._block_stat)
        self._block_stat = _open(
            f"{self._sysfs}/dev/block/{device[0]}:{device[1]}/stat", missing=-1
        )
        self._block_device = device

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
            self._throttled,
            self._vmstat,
            self._diskstats,
            self._mountinfo,
            self._block_stat,
        ):
            if fd != -1:
                os.close(fd)
        self._stat = self._meminfo = self._loadavg = self._netdev = -1
        self._uptime = self._freq = self._temp = -1
        self._throttled = self._vmstat = self._diskstats = self._mountinfo = -1
        self._block_stat = -1
