"""Our datagrams carry every meminfo key the original dashboard reads, so it keeps working
when listening to bramble agents (it shows 0 for a key that is missing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bramble_testing import KEY, proc_tree

from bramble.telemetry import native
from bramble.telemetry.decode import decode
from bramble.telemetry.sample import Sampler
from tests.telemetry.machines import fixture_case

# the original dashboard's MemInfo: MemTotal, MemFree, Buffers, Cached, SwapCached, Active,
# Inactive, SwapTotal, SwapFree
ORIGINAL_DASHBOARD = {
    "MemTotal", "MemFree", "Buffers", "Cached", "SwapCached", "Active", "Inactive",
    "SwapTotal", "SwapFree",
}  # fmt: skip


@pytest.mark.parametrize("machine", ["x86_64", "raspberrypi"])
def test_the_python_agent_sends_every_key(machine: str, tmp_path: Path) -> None:
    sampler = Sampler(proc=str(proc_tree(machine, tmp_path)), disk_path="/nonexistent")
    try:
        meminfo = sampler.sample().meminfo
    finally:
        sampler.close()
    assert set(meminfo) >= ORIGINAL_DASHBOARD | {"MemAvailable"}


@pytest.mark.skipif(native.compiler() is None, reason="needs a C compiler (cc)")
@pytest.mark.parametrize("machine", ["x86_64", "raspberrypi"])
def test_the_compiled_agent_sends_every_key(
    machine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "cache"))
    case = fixture_case(machine, tmp_path)
    (data,) = case.compiled([native.ensure()], 1, [], 0, 1_700_000_000.0)
    packet = decode(data, {"k1": KEY}, allow_unsigned=False, source="", now=1_700_000_000.0)
    assert set(packet.sample.meminfo) >= ORIGINAL_DASHBOARD | {"MemAvailable"}
