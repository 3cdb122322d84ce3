"""Sampling parsers on captured /proc and /sys text, and the Sampler on real files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from bramble_testing import FIXTURES, fixture_bytes, fixture_text, proc_tree

from bramble.telemetry.sample import (
    MEMINFO_KEYS,
    Sampler,
    busy_fractions,
    meminfo_layout,
    parse_btime,
    parse_khz_as_mhz,
    parse_loadavg,
    parse_meminfo,
    parse_meminfo_at,
    parse_millidegrees,
    parse_net_dev,
    parse_stat,
    parse_uptime,
    stat_shape,
)


def _stat(data: bytes) -> list[tuple[int, int]]:
    """(busy, total) per cpu line, from parse_stat's flat (total, idle) list."""
    flat = parse_stat(data, stat_shape(data))
    return [(flat[i] - flat[i + 1], flat[i]) for i in range(0, len(flat), 2)]


def test_stat_x86_two_cores() -> None:
    data = fixture_bytes("x86_64", "stat")
    assert stat_shape(data) == (3, 11)
    total, *cores = _stat(data)
    first = fixture_text("x86_64", "stat").splitlines()[0].split()[1:]
    values = [int(x) for x in first[:8]]
    assert len(cores) == 2
    assert total == (sum(values) - values[3] - values[4], sum(values))
    # The machine total is the sum of its cores (give or take a tick of rounding).
    assert abs(sum(c[1] for c in cores) - total[1]) <= 2 * len(cores)


def test_stat_raspberry_pi_one_core_and_btime() -> None:
    data = fixture_bytes("raspberrypi", "stat")
    total, *cores = _stat(data)
    assert len(cores) == 1
    busy = 53712 + 18930 + 12 + 1071
    assert total == (busy, busy + 1462219 + 1877)
    assert parse_btime(data) == 1389018304


def test_stat_old_kernel_with_fewer_fields() -> None:
    data = b"cpu  10 0 5 100\ncpu0 10 0 5 100\nintr 5 0 0\n"
    assert stat_shape(data) == (2, 5)
    assert _stat(data) == [(15, 115), (15, 115)]


def test_stat_with_a_core_gone_does_not_fit_the_old_shape() -> None:
    data = fixture_bytes("x86_64", "stat")
    shape = stat_shape(data)
    fewer = b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"cpu1"))
    with pytest.raises(ValueError):
        parse_stat(fewer, shape)
    assert len(parse_stat(fewer, stat_shape(fewer))) == 4


def test_stat_without_btime_is_zero() -> None:
    assert parse_btime(b"cpu  1 2 3 4\ncpu0 1 2 3 4\n") == 0


def test_busy_fractions() -> None:
    # (total, idle) pairs: the machine, then one core.
    before = [1000, 900, 500, 450]
    assert busy_fractions(before, [1100, 950, 600, 550]) == [pytest.approx(0.5), 0.0]
    assert busy_fractions(before, before) == [0.0, 0.0]  # no time passed
    assert busy_fractions(before, [1100, 1010, 500, 450]) == [0.0, 0.0]  # idle went back: clamp
    assert busy_fractions([0, 0], [500, 0]) == [1.0]
    assert busy_fractions([100, 50], [110, 40]) == [1.0]  # iowait went back: clamp


def test_meminfo_x86_has_the_keys_in_order() -> None:
    data = fixture_bytes("x86_64", "meminfo")
    mem = parse_meminfo(data)
    assert tuple(mem) == MEMINFO_KEYS
    layout = meminfo_layout(data)
    assert layout is not None
    assert parse_meminfo_at(data, layout) == mem
    # Only the part up to the last wanted line needs reading.
    assert parse_meminfo_at(data[: data.find(b"\n", data.find(b"SwapFree:")) + 1], layout) == mem
    line = next(x for x in fixture_text("x86_64", "meminfo").splitlines() if "MemTotal" in x)
    assert mem["MemTotal"] == int(line.split()[1])
    assert 0 < mem["MemAvailable"] <= mem["MemTotal"]


def test_meminfo_old_pi_kernel_estimates_available() -> None:
    data = fixture_bytes("raspberrypi", "meminfo")
    mem = parse_meminfo(data)
    assert meminfo_layout(data) is None  # no MemAvailable: the general parser
    assert mem["MemTotal"] == 448776
    assert mem["MemAvailable"] == 253284 + 16340 + 126096
    assert tuple(mem) == MEMINFO_KEYS
    assert mem["SwapFree"] == 102396


def test_meminfo_similar_names_do_not_match() -> None:
    # "Cached" must not be read from "SwapCached", which comes first here.
    mem = parse_meminfo(b"SwapCached: 5 kB\nCached: 7 kB\n", ("Cached",))
    assert mem == {"Cached": 7}


def test_loadavg_and_uptime() -> None:
    assert parse_loadavg(fixture_bytes("raspberrypi", "loadavg")) == (0.08, 0.11, 0.13)
    assert parse_uptime(fixture_bytes("raspberrypi", "uptime")) == 15012.94
    assert parse_loadavg(b"") == (0.0, 0.0, 0.0)
    assert parse_uptime(b"") == 0.0
    load = parse_loadavg(fixture_bytes("x86_64", "loadavg"))
    assert all(x >= 0 for x in load)


def test_net_dev_leaves_out_loopback() -> None:
    net = parse_net_dev(fixture_bytes("raspberrypi", "net_dev"))
    assert net == {"eth0": (9872345, 4123987), "wlan0": (0, 0)}
    x86 = parse_net_dev(fixture_bytes("x86_64", "net_dev"))
    assert "lo" not in x86 and x86
    assert all(rx >= 0 and tx >= 0 for rx, tx in x86.values())


def test_net_dev_old_kernel_without_space_after_the_name() -> None:
    data = fixture_bytes("raspberrypi", "net_dev").replace(b"eth0: ", b"eth0:")
    assert parse_net_dev(data) == {"eth0": (9872345, 4123987), "wlan0": (0, 0)}
    assert parse_net_dev(b"") == {}


def test_net_dev_leaves_out_a_name_that_is_not_utf8() -> None:
    data = fixture_bytes("raspberrypi", "net_dev").replace(b"wlan0", b"wl\xff0")
    assert parse_net_dev(data) == {"eth0": (9872345, 4123987)}
    old = data.replace(b"eth0: ", b"eth0:")  # the old kernels' layout, parsed line by line
    assert parse_net_dev(old) == {"eth0": (9872345, 4123987)}


def test_sensors() -> None:
    assert parse_millidegrees(fixture_bytes("raspberrypi", "thermal_zone0_temp")) == 47.078
    assert parse_khz_as_mhz(fixture_bytes("raspberrypi", "scaling_cur_freq")) == 700
    assert parse_millidegrees(b"") == 0.0
    assert parse_khz_as_mhz(b"garbage") == 0


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
    data = (FIXTURES / "stat_pi4.txt").read_bytes()
    total, *cores = _stat(data)
    assert len(cores) == 4
    assert parse_btime(data) == 1700000000
    busy = 1254317 + 3120 + 412876 + 8123
    assert total == (busy, busy + 38712345 + 21876)
    assert parse_millidegrees((FIXTURES / "thermal_temp.txt").read_bytes()) == 48.312
    assert parse_khz_as_mhz((FIXTURES / "scaling_cur_freq.txt").read_bytes()) == 1500


def test_sampler_follows_a_core_going_offline(tmp_path: Path) -> None:
    proc = proc_tree("x86_64", tmp_path)
    sampler = Sampler(proc=str(proc), cpufreq_path="/nonexistent", thermal_path="/nonexistent")
    try:
        assert len(sampler.sample().cores) == 2
        text = (proc / "stat").read_bytes()
        fewer = b"\n".join(line for line in text.split(b"\n") if not line.startswith(b"cpu1"))
        with open(proc / "stat", "r+b") as f:  # same inode: the kept descriptor sees it
            f.write(fewer)
            f.truncate()
        sample = sampler.sample()
    finally:
        sampler.close()
    assert len(sample.cores) == 1
    assert 0.0 <= sample.cpuusage <= 1.0


def test_sampler_on_a_stat_it_cannot_read_reports_zero(tmp_path: Path) -> None:
    proc = proc_tree("raspberrypi", tmp_path)
    (proc / "stat").write_bytes(b"cpu 1 2\ncpu0 1 2 3 4 5\nintr 1\n")
    sampler = Sampler(proc=str(proc), cpufreq_path="/nonexistent", thermal_path="/nonexistent")
    try:
        sample = sampler.sample()
    finally:
        sampler.close()
    assert sample.cpuusage == 0.0 and sample.cores == ()
    assert sample.meminfo["MemTotal"] == 448776


def test_numbers_past_what_both_agents_keep_are_refused_on_purpose() -> None:
    # The compiled agent keeps 64-bit numbers; both agents refuse alike what does not fit.
    exact = 2**53  # a cpu line's jiffies: beyond, the busy fraction is no longer exact
    stat = f"cpu  {exact - 1} 0 0 0\n".encode()
    assert parse_stat(stat, stat_shape(stat)) == [exact - 1, 0]
    stat = f"cpu  {exact - 1} 0 0 1\n".encode()
    with pytest.raises(ValueError):
        parse_stat(stat, stat_shape(stat))
    top = 2**63 - 1
    text = (
        f"MemTotal: {top + 1} kB\nMemFree: {top} kB\nBuffers: {top} kB\nCached: 1 kB\n"
        f"SwapTotal: 1 kB\nSwapFree: {2**70} kB\n"
    ).encode()
    assert parse_meminfo(text) == {
        "MemFree": top, "MemAvailable": top, "Buffers": top, "Cached": 1, "SwapTotal": 1
    }  # fmt: skip
    full = text.replace(b"Buffers", b"MemAvailable: 1 kB\nBuffers").replace(
        b"SwapTotal", b"SwapCached: 0 kB\nActive: 1 kB\nInactive: 1 kB\nSwapTotal"
    )
    layout = meminfo_layout(full)
    assert layout is not None
    with pytest.raises(ValueError):  # the fast path hands over to parse_meminfo
        parse_meminfo_at(full, layout)
    head = b"Inter-| Receive | Transmit\n face |bytes packets|bytes packets\n"
    row = " {}: {} 0 0 0 0 0 0 0 {} 0 0 0 0 0 0 0\n"
    rows = [("a", 2**64 - 1, 1), ("b", 2**64, 1), ("c", 1, -1), ("d", "x", 1)]
    dev = head + "".join(row.format(name, rx, tx) for name, rx, tx in rows).encode()
    assert parse_net_dev(dev) == {"a": (2**64 - 1, 1)}
    assert parse_net_dev(dev.replace(b" 0 0 0 0 0 0 0\n", b"\n")) == {"a": (2**64 - 1, 1)}
    assert parse_btime(b"cpu 1 2 3 4\nbtime 9223372036854775808\n") == 0
    assert parse_btime(b"cpu 1 2 3 4\nbtime 9223372036854775807\n") == top
    assert parse_btime(b"cpu 1 2 3 4\nbtime x\n") == parse_btime(b"cpu 1 2 3 4\nbtime ") == 0
    assert parse_khz_as_mhz(b"9223372036854775808\n") == 0
    assert parse_khz_as_mhz(b"-1001\n") == -2
    assert parse_millidegrees(b"-9223372036854775808\n") == 0.0
    assert parse_millidegrees(b"9223372036854775807\n") == top / 1000.0


@pytest.mark.parametrize("word", [b"nan", b"inf", b"-Infinity", b"1e400", b"0x10"])
def test_load_and_uptime_that_are_not_finite_numbers_read_as_unreadable(word: bytes) -> None:
    assert parse_loadavg(b"0.50 " + word + b" 0.10 1/100 99\n") == (0.0, 0.0, 0.0)
    assert parse_uptime(word + b" 12.5\n") == 0.0
