"""The metric registry: every metric with a name, its unit, how it is read from a sample, and
how the cluster aggregates it.

History (one column per stored metric), `/metrics`, the node view, `bramble top`, `bramble
status` and the dashboard all name metrics as here, and derived values (memory used, say) are
computed here once, on the master, and sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from bramble.telemetry.wire import Sample

Aggregation = Literal["sum", "mean", "max"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: NAME in the API and history, its UNIT, what it is (HELP), how it is READ
    from a sample and the node's network rates (bytes/s in, out), how the CLUSTER aggregates
    the nodes' values; STORED if history keeps it (a column), and its Prometheus gauge name
    (without the `bramble_node_` prefix) if `/metrics` exports it. History keeps a value as
    an integer count of 1/SCALE units: the precision of what the agent reads (millidegrees,
    hundredths of load), or what the API shows (four decimals of a ratio).

    READ gives None where the node does not report the metric (a board without the
    firmware's flags): it is then absent, never 0. A RATE metric is not read from one sample
    but from the node's last two (the master's `rates`, by name)."""

    name: str
    unit: str
    help: str
    read: Callable[[Sample, float, float], float | None]
    cluster: Aggregation
    stored: bool = True
    prometheus: str | None = None
    scale: int = 1
    rate: bool = False


def _available(sample: Sample) -> int:
    mem = sample.meminfo
    return mem.get("MemAvailable", mem.get("MemFree", 0))


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def _flag(bit: int) -> Callable[[Sample, float, float], float | None]:
    """A bit of the Raspberry Pi firmware's throttling flags: 1.0 or 0.0, None off a Pi."""
    return lambda s, rx, tx: None if s.throttled is None else float(s.throttled >> bit & 1)


def _fullest(sample: Sample) -> float | None:
    used = [_percent(used, total) for total, used, _free in sample.fs.values()]
    return max(used) if used else None


def _no_read(sample: Sample, rx: float, tx: float) -> None:
    return None


RATES = ("disk_read", "disk_write", "swap_in", "swap_out")
"""The rate metrics the master derives from a node's counters, beside net_rx and net_tx."""


# History's columns are the stored metrics in this order: add new ones at the end.
METRICS: tuple[Metric, ...] = (
    Metric("cpuusage", "ratio", "CPU busy fraction over the last interval",
           lambda s, rx, tx: s.cpuusage, "mean", prometheus="cpu_usage_ratio", scale=10_000),
    Metric("cputemp", "°C", "CPU temperature",
           lambda s, rx, tx: s.cputemp, "mean", prometheus="cpu_temperature_celsius", scale=1000),
    Metric("cpufreq", "MHz", "CPU frequency",
           lambda s, rx, tx: s.cpufreq, "mean", prometheus="cpu_frequency_mhz"),
    Metric("load1", "", "1 minute load average",
           lambda s, rx, tx: s.loadavg[0], "mean", prometheus="load1", scale=100),
    Metric("load5", "", "5 minute load average",
           lambda s, rx, tx: s.loadavg[1], "mean", prometheus="load5", scale=100),
    Metric("load15", "", "15 minute load average",
           lambda s, rx, tx: s.loadavg[2], "mean", prometheus="load15", scale=100),
    Metric("mem_used", "kB", "memory in use: MemTotal less MemAvailable (or MemFree)",
           lambda s, rx, tx: s.meminfo.get("MemTotal", 0) - _available(s), "sum"),
    Metric("mem_total", "kB", "MemTotal",
           lambda s, rx, tx: s.meminfo.get("MemTotal", 0), "sum", prometheus="memory_total_kb"),
    Metric("mem_available", "kB", "MemAvailable (or MemFree where the kernel has none)",
           lambda s, rx, tx: _available(s), "sum", prometheus="memory_available_kb"),
    Metric("swap_used", "kB", "swap in use: SwapTotal less SwapFree",
           lambda s, rx, tx: s.meminfo.get("SwapTotal", 0) - s.meminfo.get("SwapFree", 0),
           "sum"),
    Metric("disk_used", "bytes", "root filesystem bytes used",
           lambda s, rx, tx: s.disk.get("used", 0), "sum", prometheus="disk_used_bytes"),
    Metric("net_rx", "bytes/s", "network receive rate, all interfaces but loopback",
           lambda s, rx, tx: rx, "sum", prometheus="network_receive_bytes_per_second", scale=10),
    Metric("net_tx", "bytes/s", "network transmit rate, all interfaces but loopback",
           lambda s, rx, tx: tx, "sum", prometheus="network_transmit_bytes_per_second", scale=10),
    Metric("uptime", "s", "seconds since boot",
           lambda s, rx, tx: s.uptime, "max", stored=False, prometheus="uptime_seconds"),
    Metric("mem_used_percent", "%", "memory in use, per cent of MemTotal (0 when unknown)",
           lambda s, rx, tx: _percent(s.meminfo.get("MemTotal", 0) - _available(s),
                                      s.meminfo.get("MemTotal", 0)), "mean", stored=False),
    Metric("disk_used_percent", "%", "root filesystem used, per cent of its size (0 when "
           "unknown)", lambda s, rx, tx: _percent(s.disk.get("used", 0), s.disk.get("total", 0)),
           "mean", stored=False),
    # What only some boards report (absent elsewhere, never 0). The firmware's flags are not
    # stored; the rates and the fullest filesystem are (history's blocks say how many metric
    # columns they hold, so these were added after the first 13; absent is 0 there).
    Metric("undervoltage", "", "1 while the supply is under-voltage now (Raspberry Pi "
           "firmware flag, bit 0), else 0", _flag(0), "max", stored=False,
           prometheus="undervoltage"),
    Metric("freq_capped", "", "1 while the ARM frequency is capped now (bit 1), else 0",
           _flag(1), "max", stored=False, prometheus="frequency_capped"),
    Metric("throttled", "", "1 while the firmware throttles the CPU now (bit 2), else 0",
           _flag(2), "max", stored=False, prometheus="throttled"),
    Metric("soft_temp_limit", "", "1 while the soft temperature limit is active now (bit 3), "
           "else 0", _flag(3), "max", stored=False, prometheus="soft_temperature_limit"),
    Metric("undervoltage_since_boot", "", "1 if the supply has been under-voltage since boot "
           "(bit 16), else 0", _flag(16), "max", stored=False,
           prometheus="undervoltage_since_boot"),
    Metric("freq_capped_since_boot", "", "1 if the ARM frequency has been capped since boot "
           "(bit 17), else 0", _flag(17), "max", stored=False,
           prometheus="frequency_capped_since_boot"),
    Metric("throttled_since_boot", "", "1 if the firmware has throttled the CPU since boot "
           "(bit 18), else 0", _flag(18), "max", stored=False,
           prometheus="throttled_since_boot"),
    Metric("soft_temp_limit_since_boot", "", "1 if the soft temperature limit has been active "
           "since boot (bit 19), else 0", _flag(19), "max", stored=False,
           prometheus="soft_temperature_limit_since_boot"),
    Metric("disk_read", "bytes/s", "bytes read from the root filesystem's device",
           _no_read, "sum", prometheus="disk_read_bytes_per_second", rate=True),
    Metric("disk_write", "bytes/s", "bytes written to the root filesystem's device",
           _no_read, "sum", prometheus="disk_write_bytes_per_second", rate=True),
    Metric("swap_in", "pages/s", "pages swapped in (the kernel's page size: 4 KiB on most "
           "boards, 16 KiB on a Pi 5)", _no_read, "sum",
           prometheus="swap_in_pages_per_second", scale=10, rate=True),
    Metric("swap_out", "pages/s", "pages swapped out", _no_read, "sum",
           prometheus="swap_out_pages_per_second", scale=10, rate=True),
    Metric("fs_used_percent_max", "%", "the fullest real filesystem (ext4, vfat, btrfs, xfs, "
           "f2fs, ...), per cent of its size", lambda s, rx, tx: _fullest(s), "max",
           prometheus="filesystem_used_percent_max", scale=100),
)  # fmt: skip

CONDITIONS: dict[str, str] = {
    "down": "1 while the node is down (no heartbeat for `down_after` intervals), else 0",
    "clock_offset": "seconds between the node's clock and the master's, from its datagrams",
    "history_stopped": "1 while the master cannot write its history, else 0 (the master only)",
}
"""What alert rules can test besides the metrics: signals the master derives itself."""
ABSENT_AT_ZERO = frozenset({"cputemp", "cpufreq", "mem_used_percent", "disk_used_percent"})
"""Metrics whose 0 means the node does not report them: an alert rule never sees them then."""

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
STORED: tuple[Metric, ...] = tuple(m for m in METRICS if m.stored)
EXPORTED: tuple[Metric, ...] = tuple(m for m in METRICS if m.prometheus)


def read(
    metric: Metric,
    sample: Sample,
    net_rx: float,
    net_tx: float,
    rates: Mapping[str, float] | None = None,
) -> float | None:
    """METRIC of SAMPLE (with the node's network RATES, and the others): None if absent."""
    if metric.rate:
        return None if rates is None else rates.get(metric.name)
    return metric.read(sample, net_rx, net_tx)


def values(
    sample: Sample, net_rx: float, net_tx: float, rates: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Every metric SAMPLE has (with the node's network rates, and the other RATES), by name;
    those it does not report are left out."""
    out = {}
    for m in METRICS:
        value = read(m, sample, net_rx, net_tx, rates)
        if value is not None:
            out[m.name] = value
    return out


def stored_values(
    sample: Sample, net_rx: float, net_tx: float, rates: Mapping[str, float] | None = None
) -> tuple[float, ...]:
    """The stored metrics of SAMPLE (with the node's network and other RATES), in history's
    column order; one the node does not report is 0."""
    return tuple(float(read(m, sample, net_rx, net_tx, rates) or 0.0) for m in STORED)
