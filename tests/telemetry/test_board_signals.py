"""The signals only some boards have (firmware flags, model, swap and disk I/O counters,
filesystems): parsers on captured text of a Raspberry Pi 4 and a Pi 5, and an x86 machine
without any of them, where each reads as absent, never as 0."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bramble_testing import FIXTURES, fixture_bytes, proc_tree

from bramble.telemetry import sample as sample_module
from bramble.telemetry.sample import (
    MAX_SEEN,
    Sampler,
    parse_diskstats,
    parse_model,
    parse_mountinfo,
    parse_throttled,
    parse_vmstat,
    read_fs,
)
from bramble.telemetry.wire import MAX_FS

PI4_THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
PI5_THROTTLED = "sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled"


def test_model_is_the_device_tree_string_without_its_nul() -> None:
    assert parse_model(fixture_bytes("raspberrypi4", "model")) == "Raspberry Pi 4 Model B Rev 1.4"
    assert parse_model(fixture_bytes("raspberrypi5", "model")) == "Raspberry Pi 5 Model B Rev 1.0"
    assert parse_model(b"Pi\0\0\0") == "Pi"


@pytest.mark.parametrize(
    "data", [b"", b"\0", b"   \0", b'Pi "5"\0', b"Pi\\5", b"Pi\tfive", "Pi ☃".encode(), b"x" * 65]
)
def test_a_model_that_is_not_plain_text_is_absent(data: bytes) -> None:
    assert parse_model(data) is None


@pytest.mark.parametrize(
    ("data", "value"),
    [(b"50005\n", 0x50005), (b"0\n", 0), (b"80008\n", 0x80008), (b"ffffffff", 2**32 - 1)],
)
def test_throttled_flags_are_the_kernel_hex_word(data: bytes, value: int) -> None:
    assert parse_throttled(data) == value


@pytest.mark.parametrize("data", [b"", b"\n", b"0x50005", b"123456789", b"5 0", b"-1", b"5\x000"])
def test_throttled_flags_that_are_not_a_hex_word_are_absent(data: bytes) -> None:
    assert parse_throttled(data) is None


def test_swap_counters_from_vmstat() -> None:
    assert parse_vmstat(fixture_bytes("raspberrypi4", "vmstat")) == (5121, 9873)
    assert parse_vmstat(fixture_bytes("raspberrypi5", "vmstat")) == (0, 0)
    assert parse_vmstat(b"pswpin 1\npswpout 2\n") == (1, 2)
    assert parse_vmstat(b"pswpin 1\n") is None
    assert parse_vmstat(b"pswpin 1\npswpout 18446744073709551616\n") is None
    assert parse_vmstat(b"xpswpin 1\npswpout 2\n") is None


def test_disk_io_of_the_root_partition_in_bytes() -> None:
    pi4 = fixture_bytes("raspberrypi4", "diskstats")
    assert parse_diskstats(pi4, (179, 2)) == (5428458 * 512, 2437342 * 512)
    pi5 = fixture_bytes("raspberrypi5", "diskstats")
    assert parse_diskstats(pi5, (259, 2)) == (63013258 * 512, 18437118 * 512)
    assert parse_diskstats(pi5, (259, 9)) is None
    assert parse_diskstats(b"8 1 sda1 1 0 36028797018963968 0 1 0 1 0\n", (8, 1)) is None


def test_mountinfo_gives_the_root_device_and_the_real_filesystems() -> None:
    root, mounts = parse_mountinfo(fixture_bytes("raspberrypi4", "mountinfo"))
    assert root == (179, 2)
    assert mounts == [("/", b"179:2"), ("/boot/firmware", b"179:1")]  # not nfs4, tmpfs, ...
    root, mounts = parse_mountinfo(fixture_bytes("raspberrypi5", "mountinfo"))
    assert root == (259, 2)
    # /srv/shared is /mnt/data's disk again; "/mnt/usb\040stick" is not plain text
    assert [m for m, _ in mounts] == ["/", "/boot/firmware", "/mnt/data"]


def test_a_root_without_a_device_has_no_disk_io() -> None:
    overlay = b"22 1 0:31 / / rw,relatime - overlay overlay rw,lowerdir=/a\n"
    assert parse_mountinfo(overlay) == (None, [])
    btrfs = b"22 1 0:31 / / rw,relatime - btrfs /dev/sda2 rw\n"
    assert parse_mountinfo(btrfs) == (None, [("/", b"0:31")])


def test_mountinfo_is_looked_at_only_so_far() -> None:
    lines = [f"{i} 1 8:{i} / /mnt/d{i} rw - ext4 /dev/sd{i} rw" for i in range(MAX_SEEN + 10)]
    _, mounts = parse_mountinfo("\n".join(lines).encode())
    assert len(mounts) == MAX_SEEN


def test_filesystems_measured_are_bounded_and_skip_what_statvfs_cannot_read(
    tmp_path: Path,
) -> None:
    for name in ("a", "b", "c", "d", "e"):
        (tmp_path / name).mkdir()
    mounts = [(f"/{n}", f"8:{i}".encode()) for i, n in enumerate("axbcde")]
    fs = read_fs(mounts, str(tmp_path))
    assert list(fs) == ["/a", "/b", "/c", "/d"] and len(fs) == MAX_FS
    real = os.statvfs(tmp_path)
    assert fs["/a"][0] == real.f_blocks * real.f_frsize


def _sampler(machine: str, tmp_path: Path, fs_root: str = "/nonexistent") -> Sampler:
    proc = proc_tree(machine, tmp_path)
    return Sampler(
        proc=str(proc), cpufreq_path="/nonexistent", thermal_path="/nonexistent",
        disk_path="/nonexistent", sysfs=str(tmp_path / "sys"), fs_root=fs_root,
    )  # fmt: skip


def test_sampler_on_a_raspberry_pi_4_throttling(tmp_path: Path) -> None:
    sampler = _sampler("raspberrypi4", tmp_path, fs_root="/dev")
    try:
        s = sampler.sample()
        assert s.model == "Raspberry Pi 4 Model B Rev 1.4"
        assert s.throttled == 0x50005
        assert s.swap == (5121, 9873)
        assert s.diskio == (5428458 * 512, 2437342 * 512)
        assert list(s.fs) == ["/"]  # /dev, as the tests' root; /dev/boot/firmware is none
        (tmp_path / PI4_THROTTLED).write_text("50000\n")  # no longer now; since boot
        assert sampler.sample().throttled == 0x50000
    finally:
        sampler.close()


def test_sampler_without_swap_sends_no_swap_counters(tmp_path: Path) -> None:
    sampler = _sampler("raspberrypi4", tmp_path)
    meminfo = tmp_path / "proc" / "meminfo"
    with_swap = meminfo.read_text()
    without = with_swap.replace("SwapTotal:        102396 kB", "SwapTotal:             0 kB")
    assert without != with_swap
    try:
        meminfo.write_text(without)
        s = sampler.sample()
        assert s.meminfo["SwapTotal"] == 0 and s.swap is None  # absent, never (0, 0)
        meminfo.write_text(with_swap)  # swapon
        assert sampler.sample().swap == (5121, 9873)
    finally:
        sampler.close()


def test_sampler_on_a_raspberry_pi_5_finds_its_firmware_flags(tmp_path: Path) -> None:
    sampler = _sampler("raspberrypi5", tmp_path)
    try:
        s = sampler.sample()
        assert s.model == "Raspberry Pi 5 Model B Rev 1.0"
        assert s.throttled == 0
        assert s.diskio == (63013258 * 512, 18437118 * 512)
        assert s.fs == {}  # nothing under /nonexistent
        (tmp_path / PI5_THROTTLED).write_text("80008\n")
        assert sampler.sample().throttled == 0x80008
    finally:
        sampler.close()


def test_sampler_on_x86_has_none_of_them(tmp_path: Path) -> None:
    assert not (FIXTURES / "x86_64" / "model").exists()
    sampler = _sampler("x86_64", tmp_path)
    try:
        s = sampler.sample()
        assert (s.model, s.throttled, s.swap, s.diskio, s.fs) == (None, None, None, None, {})
    finally:
        sampler.close()


def test_sampler_reads_mounts_again_only_with_disk_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = os.statvfs

    def counting(path: str) -> os.statvfs_result:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(sample_module.os, "statvfs", counting)
    sampler = _sampler("raspberrypi4", tmp_path, fs_root="/dev")
    try:
        for _ in range(sample_module.DISK_EVERY):
            sampler.sample()
    finally:
        sampler.close()
    # One pass: the disk path, then each real filesystem (/ and /boot/firmware)
    assert calls == ["/nonexistent", "/dev/", "/dev/boot/firmware"]
