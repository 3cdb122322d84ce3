"""Finding a recorded lab by its prefix, from its state directory (no root needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bramble.errors import BrambleError
from bramble.lab import commands, topology


def _record(root: Path, prefix: str) -> None:
    state = root / prefix
    state.mkdir(parents=True)
    spec = state / "bramble.toml"
    spec.write_text(topology.builtin_spec_text(2))
    record = {"spec": str(spec), "uplink": "100.64.0.0/30", "url": "http://x/", "jobs": True}
    (state / "lab.json").write_text(json.dumps(record))


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(topology, "STATE_ROOT", tmp_path)
    monkeypatch.delenv(commands.PREFIX_ENV, raising=False)
    return tmp_path


def test_without_a_prefix_the_only_lab_up_is_found(state_root: Path) -> None:
    # `bramble demo` as root makes the lab 'demo'; `bramble lab status` then finds it.
    _record(state_root, "demo")
    assert commands.load_lab(None).plan.prefix == "demo"


def test_with_several_labs_up_the_error_names_them_and_how_to_choose(state_root: Path) -> None:
    _record(state_root, "demo")
    _record(state_root, "two")
    with pytest.raises(BrambleError) as caught:
        commands.load_lab(None)
    assert str(caught.value) == (
        "no lab 'lab' is up; these are: 'demo', 'two': name one with --prefix "
        "(e.g. --prefix demo) or $BRAMBLE_LAB_PREFIX"
    )


def test_a_named_lab_is_never_swapped_for_another(state_root: Path) -> None:
    _record(state_root, "demo")
    with pytest.raises(BrambleError, match="no lab 'other' is up"):
        commands.load_lab("other")
    _record(state_root, "lab")
    assert commands.load_lab(None).plan.prefix == "lab"


def test_no_lab_at_all_says_how_to_start_one(state_root: Path) -> None:
    with pytest.raises(BrambleError, match=r"no lab 'lab' is up \(start one with"):
        commands.load_lab(None)
