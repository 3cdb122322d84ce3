"""What a lab needs from the machine: neighbour tables sized, memory checked (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bramble.errors import BrambleError
from bramble.lab import capacity
from bramble.lab.capacity import Need


def test_neighbour_tables_hold_every_node_pair_of_a_64_node_lab() -> None:
    # Seen: a 32-node lab running a job filled the kernel's default 1,024 entries (32 nodes
    # each holding the other 31 and the master) and every node went stale.
    assert Need(32, jobs=True).neighbours >= 32 * 32
    limits = capacity.neighbour_limits(Need(64, jobs=True), (128, 512, 1024))
    assert limits is not None
    t1, t2, t3 = limits
    assert t3 >= 1024 + 2 * 64 * 65
    assert t1 == 128 and t3 // 2 <= t2 <= t3


def test_neighbour_limits_are_only_raised() -> None:
    assert capacity.neighbour_limits(Need(4, jobs=True), (128, 512, 1024)) is None
    assert capacity.neighbour_limits(Need(16, jobs=True), (128, 512, 1024)) is None
    assert capacity.neighbour_limits(Need(64, jobs=True), (1000, 20000, 40000)) is None


def _proc_dir(root: Path, family: str, t3: int) -> Path:
    directory = root / family / "neigh" / "default"
    directory.mkdir(parents=True)
    for i, value in ((1, 128), (2, 512), (3, t3)):
        (directory / f"gc_thresh{i}").write_text(f"{value}\n")
    return directory


def test_size_neighbour_tables_writes_both_families_and_says_so(tmp_path: Path) -> None:
    v4 = _proc_dir(tmp_path, "ipv4", 1024)
    v6 = _proc_dir(tmp_path, "ipv6", 100_000)
    said = capacity.size_neighbour_tables(Need(32, jobs=True), (v4, v6, tmp_path / "none"))
    t1, t2, t3 = capacity.read_neighbour_limits(v4)
    assert t3 >= 1024 + 2 * 32 * 33 and t2 >= t3 // 2 and t1 == 128
    assert capacity.read_neighbour_limits(v6) == (128, 512, 100_000)
    assert said == [f"ipv4 neighbour table limit 1024 -> {t3} entries"]


def test_a_lab_too_big_for_memory_is_refused_before_it_is_built() -> None:
    with pytest.raises(BrambleError) as caught:
        capacity.check_memory(Need(1000, jobs=True), available_mib=8 * 1024)
    message = str(caught.value)
    most = capacity.fitting_nodes(8 * 1024, jobs=True)
    assert "1000-node lab needs about" in message and "measured" in message
    assert f"--nodes {most} or fewer" in message and "--no-jobs" in message
    assert "\n" not in message
    # what it says fits, fits
    capacity.check_memory(Need(most, jobs=True), available_mib=8 * 1024)
    capacity.check_memory(Need(64, jobs=True), available_mib=8 * 1024)


def test_memory_available_is_read_from_meminfo() -> None:
    text = "MemTotal:       24684188 kB\nMemFree: 1 kB\nMemAvailable:   20971520 kB\n"
    assert capacity.mem_available_mib(text) == 20480


def test_too_many_threads_is_refused() -> None:
    with pytest.raises(BrambleError, match=r"kernel\.pid_max"):
        capacity.check_threads(Need(64, jobs=True), pid_max=1000, threads_max=10**6, running=800)
    capacity.check_threads(Need(64, jobs=True), pid_max=32768, threads_max=10**6, running=800)
