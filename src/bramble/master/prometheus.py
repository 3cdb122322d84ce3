"""Prometheus exposition: one series per node and metric, plus the collector's counters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from bramble.telemetry.wire import Sample

if TYPE_CHECKING:
    from bramble.master.service import MasterService

GAUGES: tuple[tuple[str, str, Callable[[Sample], float]], ...] = (
    ("cpu_usage_ratio", "CPU busy fraction over the last interval", lambda s: s.cpuusage),
    ("cpu_temperature_celsius", "CPU temperature", lambda s: s.cputemp),
    ("cpu_frequency_mhz", "CPU frequency", lambda s: s.cpufreq),
    ("load1", "1 minute load average", lambda s: s.loadavg[0]),
    ("load5", "5 minute load average", lambda s: s.loadavg[1]),
    ("load15", "15 minute load average", lambda s: s.loadavg[2]),
    ("memory_total_kb", "MemTotal", lambda s: s.meminfo.get("MemTotal", 0)),
    ("memory_available_kb", "MemAvailable", lambda s: s.meminfo.get("MemAvailable", 0)),
    ("disk_used_bytes", "root filesystem bytes used", lambda s: s.disk.get("used", 0)),
    ("uptime_seconds", "seconds since boot", lambda s: s.uptime),
)


class _NodeCollector(Collector):
    def __init__(self, master: MasterService) -> None:
        self.master = master

    def collect(self) -> Iterator[Any]:
        master = self.master
        now = time.time()
        with master.lock:
            states = [
                (s.name, s.sample, master.table.status_at(s, now), s.net_rx, s.net_tx)
                for s in master.table.nodes.values()
            ]
        up = GaugeMetricFamily("bramble_node_up", "1 if the node is up", labels=["node", "status"])
        for name, _sample, status, _rx, _tx in states:
            up.add_metric([name, status], 1.0 if status == "up" else 0.0)
        yield up
        for metric, doc, get in GAUGES:
            family = GaugeMetricFamily(f"bramble_node_{metric}", doc, labels=["node"])
            for name, sample, _status, _rx, _tx in states:
                if sample is not None:
                    family.add_metric([name], float(get(sample)))
            yield family
        for direction, receive in (("receive", True), ("transmit", False)):
            family = GaugeMetricFamily(
                f"bramble_node_network_{direction}_bytes_per_second",
                f"network {direction} rate, all interfaces but loopback",
                labels=["node"],
            )
            for name, _sample, _status, rx, tx in states:
                family.add_metric([name], rx if receive else tx)
            yield family
        stats = master.collector.stats
        accepted = CounterMetricFamily("bramble_datagrams_accepted", "telemetry datagrams accepted")
        accepted.add_metric([], float(stats.accepted))
        yield accepted
        rejected = CounterMetricFamily(
            "bramble_datagrams_rejected", "telemetry datagrams rejected", labels=["reason"]
        )
        for reason, count in sorted(stats.rejected.items()):
            rejected.add_metric([reason], float(count))
        yield rejected


def exposition(master: MasterService) -> tuple[bytes, str]:
    """The Prometheus text for MASTER, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(master))
    return generate_latest(registry), CONTENT_TYPE_LATEST
