"""Prometheus exposition: one series per node and exported metric (see the registry in
`bramble.telemetry.metrics`), plus the collector's counters.

It reads through `Source`, a protocol of its own, so it knows nothing of how the master holds
its nodes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from bramble.master.views import AlertView, HealthView
from bramble.telemetry.metrics import EXPORTED


class Source(Protocol):
    """What the exposition reads."""

    def readings(self) -> list[tuple[str, str, bool, Mapping[str, float] | None]]:
        """Each node's name, status ("up", "stale", "down"), whether it signs, and metrics
        (None before any)."""
        ...

    def datagrams(self) -> tuple[int, Mapping[str, int]]:
        """Datagrams accepted, and rejected by reason."""
        ...

    def boards(self) -> list[tuple[str, str | None, Mapping[str, tuple[int, int, int]]]]:
        """Each node's name, board model (None where it has none) and real filesystems
        (mount point: total, used, free bytes), from its latest sample."""
        ...

    def health_view(self) -> HealthView:
        """What works in the master, part by part."""
        ...

    def refused(self) -> Mapping[str, int]:
        """HTTP requests refused, by reason."""
        ...

    def alert_views(self) -> list[AlertView]:
        """Alerts pending, firing, or resolved lately."""
        ...


class _NodeCollector(Collector):
    def __init__(self, source: Source) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        readings = self.source.readings()
        up = GaugeMetricFamily("bramble_node_up", "1 if the node is up", labels=["node", "status"])
        signed = GaugeMetricFamily(
            "bramble_node_signed",
            "1 if the node signs its datagrams, 0 for a legacy (unsigned) sender",
            labels=["node"],
        )
        for name, status, is_signed, _values in readings:
            up.add_metric([name, status], 1.0 if status == "up" else 0.0)
            signed.add_metric([name], 1.0 if is_signed else 0.0)
        yield up
        yield signed
        for metric in EXPORTED:
            family = GaugeMetricFamily(
                f"bramble_node_{metric.prometheus}", metric.help, labels=["node"]
            )
            for name, _status, _signed, values in readings:
                if values is not None and metric.name in values:  # absent: no series
                    family.add_metric([name], float(values[metric.name]))
            yield family
        yield from self._boards()
        alerts = GaugeMetricFamily(
            "ALERTS",
            "1 for each alert pending or firing, as Prometheus's own rules export them",
            labels=["alertname", "alertstate", "node", "severity"],
        )
        for alert in self.source.alert_views():
            if alert.state != "resolved":
                alerts.add_metric([alert.rule, alert.state, alert.node, alert.severity], 1.0)
        yield alerts
        health = self.source.health_view()
        works = GaugeMetricFamily(
            "bramble_part_up", "1 if this part of the master works (see /api/health)",
            labels=["part"],
        )  # fmt: skip
        errors = CounterMetricFamily(
            "bramble_errors", "failures of the master's own parts", labels=["part"]
        )
        for part, view in sorted(health.parts.items()):
            works.add_metric([part], 1.0 if view.ok else 0.0)
            errors.add_metric([part], float(view.errors))
        yield works
        yield errors
        refused = CounterMetricFamily(
            "bramble_http_refused", "HTTP requests refused by a limit", labels=["reason"]
        )
        for reason, count in sorted(self.source.refused().items()):
            refused.add_metric([reason], float(count))
        yield refused
        accepted_count, rejected_counts = self.source.datagrams()
        accepted = CounterMetricFamily("bramble_datagrams_accepted", "telemetry datagrams accepted")
        accepted.add_metric([], float(accepted_count))
        yield accepted
        rejected = CounterMetricFamily(
            "bramble_datagrams_rejected", "telemetry datagrams rejected", labels=["reason"]
        )
        for reason, count in sorted(rejected_counts.items()):
            rejected.add_metric([reason], float(count))
        yield rejected

    def _boards(self) -> Iterator[Any]:
        boards = self.source.boards()
        info = GaugeMetricFamily(
            "bramble_node_info", "1, labelled with the board model (device tree)",
            labels=["node", "model"],
        )  # fmt: skip
        families = [
            GaugeMetricFamily(
                f"bramble_node_filesystem_{what}_bytes",
                f"{what} bytes of each real filesystem (ext4, vfat, btrfs, xfs, f2fs, ...)",
                labels=["node", "mountpoint"],
            )
            for what in ("size", "used", "free")
        ]
        for name, model, filesystems in boards:
            if model is not None:
                info.add_metric([name, model], 1.0)
            for point, row in filesystems.items():
                for family, value in zip(families, row, strict=True):
                    family.add_metric([name, point], float(value))
        yield info
        yield from families


def exposition(source: Source) -> tuple[bytes, str]:
    """The Prometheus text for SOURCE, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(source))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class PrometheusText(Response):
    """The Prometheus text format."""

    media_type = CONTENT_TYPE_LATEST


def router(source: Source) -> APIRouter:
    """`GET /metrics` for SOURCE."""
    routes = APIRouter()

    @routes.get(
        "/metrics",
        summary="Prometheus exposition: every node's metrics, and the datagram counters",
        response_class=PrometheusText,
        responses={200: {"description": "the Prometheus text format"}},
    )
    def metrics() -> PrometheusText:
        body, _content_type = exposition(source)
        return PrometheusText(body)

    return routes
