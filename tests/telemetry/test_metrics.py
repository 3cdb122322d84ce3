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
        "disk_read", "disk_write", "swap_in", "swap_out", "fs_used_percent_max",
    ]  # fmt: skip
    assert stored_values(SAMPLE, 1.5, 2.5)[6] == 600.0


def test_names_units_and_aggregations() -> None:
    assert len(BY_NAME) == len(METRICS)
    assert {m.name for m in METRICS if m.cluster == "sum"} == {
        "mem_used", "mem_total", "mem_available", "swap_used", "disk_used", "net_rx", "net_tx",
        "disk_read", "disk_write", "swap_in", "swap_out",
    }  # fmt: skip
    assert BY_NAME["cpuusage"].cluster == "mean" and BY_NAME["mem_used"].unit == "kB"
    names = [m.prometheus for m in EXPORTED]
    assert len(set(names)) == len(names) and "cpu_usage_ratio" in names


PI = SAMPLE._replace(
    model="Raspberry Pi 4 Model B Rev 1.4",
    throttled=0x50005,
    swap=(10, 20),
    diskio=(512, 1024),
    fs={"/": (100, 91, 9), "/boot/firmware": (50, 10, 40)},
)
BOARD = (
    "undervoltage", "freq_capped", "throttled", "soft_temp_limit", "undervoltage_since_boot",
    "freq_capped_since_boot", "throttled_since_boot", "soft_temp_limit_since_boot",
    "disk_read", "disk_write", "swap_in", "swap_out", "fs_used_percent_max",
)  # fmt: skip


def test_board_signals_are_absent_where_the_board_lacks_them() -> None:
    assert not set(BOARD) & set(values(SAMPLE, 0, 0))
    assert not set(BOARD) & set(values(SAMPLE, 0, 0, {}))


def test_firmware_flags_each_bit_and_the_fullest_filesystem() -> None:
    got = values(PI, 0, 0, {"disk_read": 5.0, "swap_out": 1.0})
    assert {k: got[k] for k in BOARD if k in got} == {
        "undervoltage": 1.0, "freq_capped": 0.0, "throttled": 1.0, "soft_temp_limit": 0.0,
        "undervoltage_since_boot": 1.0, "freq_capped_since_boot": 0.0,
        "throttled_since_boot": 1.0, "soft_temp_limit_since_boot": 0.0,
        "disk_read": 5.0, "swap_out": 1.0, "fs_used_percent_max": 91.0,
    }  # fmt: skip
    assert values(PI._replace(throttled=0x80008), 0, 0)["soft_temp_limit"] == 1.0
    # the firmware's flags are not stored; the rates and the fullest filesystem are
    read = stored_values(PI, 0, 0, {"disk_read": 5.0})
    stored = dict(zip([m.name for m in STORED], read, strict=True))
    assert stored.keys().isdisjoint(BOARD[:8])
    assert stored["disk_read"] == 5.0 and stored["swap_in"] == 0.0
    assert stored["fs_used_percent_max"] == 91.0
