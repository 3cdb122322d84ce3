"""Prometheus exposition: one series per node and exported metric (see the registry in
`bramble.telemetry.metrics`), plus the collector's counters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from bramble.telemetry.metrics import EXPORTED

if TYPE_CHECKING:
    from bramble.master.service import MasterService


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
        for metric in EXPORTED:
            family = GaugeMetricFamily(
                f"bramble_node_{metric.prometheus}", metric.help, labels=["node"]
            )
            for name, sample, _status, rx, tx in states:
                if sample is not None:
                    family.add_metric([name], float(metric.read(sample, rx, tx)))
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
