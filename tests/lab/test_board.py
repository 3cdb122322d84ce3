"""The lab boards' firmware flags: what `bramble lab throttle` writes is what a Raspberry Pi's
firmware says, and what both agents read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bramble.errors import BrambleError
from bramble.lab import board
from bramble.telemetry.sample import Sampler, open_throttled, parse_throttled


def test_flags_go_as_on_a_board_and_the_agent_reads_them(tmp_path: Path) -> None:
    node = tmp_path / "alpha"
    root = board.power_on(node)
    assert board.flags(node) == 0
    fd = open_throttled(str(root))  # kept open by the agent, as on a board
    try:
        assert board.throttle(node, undervoltage=True) == 0x50005  # vcgencmd's weak supply
        assert board.throttle(node) == 0xD000D  # and now too hot as well
        assert board.throttle(node, clear=True) == 0xD0000  # since boot stays
        assert parse_throttled(os.pread(fd, 64, 0)) == 0xD0000
    finally:
        os.close(fd)
    assert board.describe(0x50005) == (
        "0x50005: under-voltage, throttled (since boot: under-voltage, throttled)"
    )
    assert board.describe(0) == "0x0: all clear now"
    assert board.power_on(node) == root and board.flags(node) == 0  # a new boot clears them


def test_the_python_sampler_reports_the_lab_flags(tmp_path: Path) -> None:
    node = tmp_path / "beta"
    sampler = Sampler(sysfs=str(board.power_on(node)))
    board.throttle(node, undervoltage=True)
    assert sampler.sample().throttled == 0x50005


def test_a_node_never_powered_on_is_said_so(tmp_path: Path) -> None:
    with pytest.raises(BrambleError, match="has not been powered on"):
        board.throttle(tmp_path / "gamma")
