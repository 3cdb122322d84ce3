"""The metric registry: what each metric reads from a sample, and history's stable columns."""

from __future__ import annotations

from bramble.telemetry.metrics import BY_NAME, EXPORTED, METRICS, STORED, stored_values, values
from bramble.telemetry.wire import Sample

SAMPLE = Sample(
    1500,
    50.0,
    0.25,
    (1.0, 0.5, 0.25),
    {"MemTotal": 1000, "MemFree": 100, "MemAvailable": 400, "SwapTotal": 100, "SwapFree": 60},
    cores=(0.2, 0.3),
    disk={"total": 10, "used": 4, "free": 6},
    uptime=99.5,
)


def test_every_metric_read_from_one_sample() -> None:
    assert values(SAMPLE, 1.5, 2.5) == {
        "cpuusage": 0.25, "cputemp": 50.0, "cpufreq": 1500, "load1": 1.0, "load5": 0.5,
        "load15": 0.25, "mem_used": 600, "mem_total": 1000, "mem_available": 400,
        "swap_used": 40, "disk_used": 4, "net_rx": 1.5, "net_tx": 2.5, "uptime": 99.5,
        "mem_used_percent": 60.0, "disk_used_percent": 40.0,
    }  # fmt: skip


def test_memory_without_memavailable_falls_back_to_memfree() -> None:
    old_kernel = SAMPLE._replace(meminfo={"MemTotal": 1000, "MemFree": 100})
    got = values(old_kernel, 0, 0)
    assert got["mem_used"] == 900 and got["mem_available"] == 100 and got["swap_used"] == 0


def test_stored_metrics_keep_historys_column_order() -> None:
    # The history tables have these columns in this order: new metrics go at the end.
    assert [m.name for m in STORED] == [
        "cpuusage", "cputemp", "cpufreq", "load1", "load5", "load15", "mem_used", "mem_total",
        "mem_available", "swap_used", "disk_used", "net_rx", "net_tx",
    ]  # fmt: skip
    assert stored_values(SAMPLE, 1.5, 2.5)[6] == 600.0


def test_names_units_and_aggregations() -> None:
    assert len(BY_NAME) == len(METRICS)
    assert {m.name for m in METRICS if m.cluster == "sum"} == {
        "mem_used", "mem_total", "mem_available", "swap_used", "disk_used", "net_rx", "net_tx",
    }  # fmt: skip
    assert BY_NAME["cpuusage"].cluster == "mean" and BY_NAME["mem_used"].unit == "kB"
    names = [m.prometheus for m in EXPORTED]
    assert len(set(names)) == len(names) and "cpu_usage_ratio" in names
