"""Fuzz: no spec that passes `check` renders a broken or open config. Hypothesis mixes good
values with hostile ones in every key that reaches a config file; each spec that passes is
rendered and checked by the real tools (bench/fuzz.py runs the same with many more)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fuzzing import Tools, rendered_problems, spec_texts
from hypothesis import HealthCheck, given, settings

from bramble.errors import SpecError
from bramble.spec import parse_spec

pytestmark = [pytest.mark.slow]
UNIT_CHECKS = 4  # systemd-analyze verify takes about a second: only the first few specs


@pytest.fixture(scope="module")
def tools() -> Iterator[Tools]:
    import os

    found = Tools.find(netns=os.geteuid() == 0)
    try:
        yield found
    finally:
        found.close()


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=spec_texts())
def test_no_spec_that_passes_renders_a_broken_or_open_config(tools: Tools, text: str) -> None:
    try:
        spec = parse_spec(text, "fuzz.toml")
    except SpecError as exc:
        assert "\n" not in str(exc)
        tools.tick("refused")
        return
    tools.tick("passed")
    units = tools.counts.get("systemd-analyze verify", 0) < 2 * UNIT_CHECKS
    assert rendered_problems(spec, tools, units=units) == [], text


def test_the_fuzzer_reached_the_tools(tools: Tools) -> None:
    """Runs after the fuzz test: both kinds of spec were made, and the tools ran."""
    assert tools.counts.get("refused", 0) > 0 and tools.counts.get("passed", 0) > 0
    if tools.dnsmasq is not None:
        assert tools.counts.get("dnsmasq --test", 0) == tools.counts["passed"]
    if tools.netns is not None:
        assert tools.counts.get("nft load", 0) == tools.counts["passed"]
