"""Silences: what they match, when, and that a restart keeps them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bramble.master.alerts import fingerprint
from bramble.master.silences import SilenceRequest, Silences
from bramble.master.views import AlertView


def alert(rule: str, node: str) -> AlertView:
    return AlertView(
        rule=rule, node=node, severity="warning", state="firing", condition="x > 1", value=2,
        summary="", active_at=0, fired_at=0, resolved_at=None, fingerprint=fingerprint(rule, node),
    )  # fmt: skip


def test_a_silence_matches_its_rules_and_nodes_until_it_ends(tmp_path: Path) -> None:
    silences = Silences(tmp_path / "silences.json")
    made = silences.add(SilenceRequest(rule="disk_*", node="node-3", duration="2h"), 100)
    assert made.ends_at == 100 + 7200 and made.active
    assert silences.matches(alert("disk_full", "node-3"), 200)
    assert not silences.matches(alert("disk_full", "node-4"), 200)
    assert not silences.matches(alert("temperature_high", "node-3"), 200)
    assert not silences.matches(alert("disk_full", "node-3"), 100 + 7200)

    again = Silences(tmp_path / "silences.json")  # a restart
    again.load()
    assert [s.id for s in again.views(200)] == [made.id]
    ended = again.expire(made.id, 300)
    assert ended is not None and not ended.active and ended.ends_at == 300
    assert not again.matches(alert("disk_full", "node-3"), 301)
    assert again.expire("nope", 301) is None
    assert again.views(300 + 86400 + 1) == []  # ended a day ago: forgotten


def test_requests_are_checked() -> None:
    with pytest.raises(ValidationError):
        SilenceRequest(duration=0)
    with pytest.raises(ValidationError):
        SilenceRequest(node="a b", duration=60)
    with pytest.raises(ValidationError):
        SilenceRequest(duration="soon")


def test_an_unreadable_file_is_no_silences(tmp_path: Path) -> None:
    (tmp_path / "silences.json").write_text("{not json")
    silences = Silences(tmp_path / "silences.json")
    silences.load()
    assert silences.views(0) == []
