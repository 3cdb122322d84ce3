"""Sampling parsers on captured /proc and /sys text, and the Sampler on real files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bramble.telemetry.sample import (
    MEMINFO_KEYS,
    Sampler,
    busy_fraction,
    parse_btime,
    parse_khz_as_mhz,
    parse_loadavg,
    parse_meminfo,
    parse_millidegrees,
    parse_net_dev,
    parse_stat,
    parse_uptime,
)
from tests.telemetry.conftest import FIXTURES, fixture_text, proc_tree


def test_stat_x86_two_cores() -> None:
    times = parse_stat(fixture_text("x86_64", "stat"))
    first = fixture_text("x86_64", "stat").splitlines()[0].split()[1:]
    values = [int(x) for x in first[:8]]
    assert len(times.cores) == 2
    assert times.total == (sum(values) - values[3] - values[4], sum(values))
    # The machine total is the sum of its cores (give or take a tick of rounding).
    assert abs(sum(c[1] for c in times.cores) - times.total[1]) <= 2 * len(times.cores)


def test_stat_raspberry_pi_one_core_and_btime() -> None:
    text = fixture_text("raspberrypi", "stat")
    times = parse_stat(text)
    assert len(times.cores) == 1
    busy = 53712 + 18930 + 12 + 1071
    assert times.total == (busy, busy + 1462219 + 1877)
    assert parse_btime(text) == 1389018304


def test_stat_without_btime_is_zero() -> None:
    assert parse_btime("cpu  1 2 3 4\ncpu0 1 2 3 4\n") == 0


def test_busy_fraction() -> None:
    assert busy_fraction((100, 1000), (150, 1100)) == pytest.approx(0.5)
    assert busy_fraction((100, 1000), (100, 1000)) == 0.0  # no time passed
    assert busy_fraction((100, 1000), (90, 1100)) == 0.0  # counters went back: clamp
    assert busy_fraction((0, 0), (500, 100)) == 1.0


def test_meminfo_x86_has_the_keys_in_order() -> None:
    mem = parse_meminfo(fixture_text("x86_64", "meminfo"))
    assert tuple(mem) == MEMINFO_KEYS
    line = next(x for x in fixture_text("x86_64", "meminfo").splitlines() if "MemTotal" in x)
    assert mem["MemTotal"] == int(line.split()[1])
    assert 0 < mem["MemAvailable"] <= mem["MemTotal"]


def test_meminfo_old_pi_kernel_estimates_available() -> None:
    mem = parse_meminfo(fixture_text("raspberrypi", "meminfo"))
    assert mem["MemTotal"] == 448776
    assert mem["MemAvailable"] == 253284 + 16340 + 126096
    assert tuple(mem) == MEMINFO_KEYS
    assert mem["SwapFree"] == 102396


def test_meminfo_similar_names_do_not_match() -> None:
    # "Cached" must not be read from "SwapCached", which comes first here.
    mem = parse_meminfo("SwapCached: 5 kB\nCached: 7 kB\n", ("Cached",))
    assert mem == {"Cached": 7}


def test_loadavg_and_uptime() -> None:
    assert parse_loadavg(fixture_text("raspberrypi", "loadavg")) == (0.08, 0.11, 0.13)
    assert parse_uptime(fixture_text("raspberrypi", "uptime")) == 15012.94
    assert parse_loadavg("") == (0.0, 0.0, 0.0)
    assert parse_uptime("") == 0.0
    load = parse_loadavg(fixture_text("x86_64", "loadavg"))
    assert all(x >= 0 for x in load)


def test_net_dev_leaves_out_loopback() -> None:
    net = parse_net_dev(fixture_text("raspberrypi", "net_dev"))
    assert net == {"eth0": (9872345, 4123987), "wlan0": (0, 0)}
    x86 = parse_net_dev(fixture_text("x86_64", "net_dev"))
    assert "lo" not in x86 and x86
    assert all(rx >= 0 and tx >= 0 for rx, tx in x86.values())


def test_sensors() -> None:
    assert parse_millidegrees(fixture_text("raspberrypi", "thermal_zone0_temp")) == 47.078
    assert parse_khz_as_mhz(fixture_text("raspberrypi", "scaling_cur_freq")) == 700
    assert parse_millidegrees("") == 0.0
    assert parse_khz_as_mhz("garbage") == 0


def test_sampler_on_pi_files(tmp_path: Path) -> None:
    proc = proc_tree("raspberrypi", tmp_path)
    sampler = Sampler(
        proc=str(proc),
        cpufreq_path=str(FIXTURES / "raspberrypi" / "scaling_cur_freq"),
        thermal_path=str(FIXTURES / "raspberrypi" / "thermal_zone0_temp"),
        disk_path=str(tmp_path),
    )
    try:
        assert sampler.boot == 1389018304
        sample = sampler.sample()
    finally:
        sampler.close()
    assert sample.cpufreq == 700
    assert sample.cputemp == 47.078
    assert sample.loadavg == (0.08, 0.11, 0.13)
    assert sample.uptime == 15012.94
    # The first sample averages since boot, as top's first screen does.
    since_boot = (53712 + 18930 + 12 + 1071) / (53712 + 18930 + 1462219 + 1877 + 12 + 1071)
    assert sample.cpuusage == pytest.approx(since_boot)
    assert sample.cores == (pytest.approx(since_boot),)
    assert sample.net["eth0"] == (9872345, 4123987)
    assert sample.disk["total"] > 0
    assert sample.disk["used"] + sample.disk["free"] <= sample.disk["total"]


def test_sampler_reads_changes_in_kept_files(tmp_path: Path) -> None:
    proc = proc_tree("raspberrypi", tmp_path)
    sampler = Sampler(proc=str(proc), cpufreq_path="/nonexistent", thermal_path="/nonexistent")
    try:
        sampler.sample()
        # Rewrite in place (same inode): the kept descriptor sees the new counters.
        text = (proc / "stat").read_text()
        newer = text.replace("cpu  53712 0 18930 1462219", "cpu  53762 0 18930 1462269", 1).replace(
            "cpu0 53712 0 18930 1462219", "cpu0 53712 0 18930 1462319", 1
        )
        with open(proc / "stat", "r+") as f:
            f.write(newer)
        sample = sampler.sample()
    finally:
        sampler.close()
    assert sample.cpuusage == pytest.approx(0.5)
    assert sample.cores == (0.0,)


def test_missing_sensors_report_zero(tmp_path: Path) -> None:
    # The original C daemon crashes here (fclose(NULL)); the sampler reports 0.
    sampler = Sampler(
        cpufreq_path=str(tmp_path / "no" / "scaling_cur_freq"),
        thermal_path=str(tmp_path / "no" / "temp"),
    )
    try:
        time.sleep(0.05)
        sample = sampler.sample()
    finally:
        sampler.close()
    assert sample.cpufreq == 0
    assert sample.cputemp == 0.0
    assert 0.0 <= sample.cpuusage <= 1.0
    assert len(sample.cores) == os.cpu_count()
    assert sample.meminfo["MemTotal"] > 0


def test_sampler_on_this_machine_boot_epoch() -> None:
    sampler = Sampler()
    try:
        sample = sampler.sample()
    finally:
        sampler.close()
    assert abs(sampler.boot + sample.uptime - time.time()) < 5


def test_stat_raspberry_pi_4_four_cores() -> None:
    text = (FIXTURES / "stat_pi4.txt").read_text()
    times = parse_stat(text)
    assert len(times.cores) == 4
    assert parse_btime(text) == 1700000000
    busy = 1254317 + 3120 + 412876 + 8123
    assert times.total == (busy, busy + 38712345 + 21876)
    assert parse_millidegrees((FIXTURES / "thermal_temp.txt").read_text()) == 48.312
    assert parse_khz_as_mhz((FIXTURES / "scaling_cur_freq.txt").read_text()) == 1500
