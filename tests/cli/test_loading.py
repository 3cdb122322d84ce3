"""The CLI loads the cluster once per command: every command parses the spec exactly once.

Each command runs in this process (Typer's runner) against a loopback spec whose master is not
running, so the commands that talk to a master stop there; what is counted is every parse of
spec text into the model (`Spec.model_validate`), wherever it happens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bramble_testing import write_spec
from typer.testing import CliRunner

from bramble.cli import app
from bramble.spec import Spec


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every spec parse made while the test runs."""
    seen: list[object] = []
    original = Spec.model_validate.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Spec], obj: Any, *args: Any, **kwargs: Any) -> Spec:
        seen.append(obj)
        return original(cls, obj, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Spec, "model_validate", classmethod(counting))
    yield seen


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("BRAMBLE_SPEC", raising=False)
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path / "cluster", nodes=2)
    (tmp_path / "job.py").write_text("def main(client):\n    return 1\n")
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--spec", "SPEC"],
        ["check", "SPEC"],
        ["render", "--spec", "SPEC", "--out", "out"],
        ["apply", "--role", "master", "--spec", "SPEC", "--root", "root", "--dry-run"],
        ["nodes", "list", "--spec", "SPEC"],
        ["status", "--spec", "SPEC"],
        ["top", "--spec", "SPEC"],
        ["run", "--spec", "SPEC", "job.py"],
        ["run", "--spec", "SPEC", "--follow", "job.py"],
        ["jobs", "--spec", "SPEC"],
        ["logs", "--spec", "SPEC", "1"],
        ["cancel", "--spec", "SPEC", "1"],
        ["exec", "--spec", "SPEC", "--", "true"],
        ["hosts", "--spec", "SPEC"],
        ["hosts", "--spec", "SPEC", "--format", "dask"],
        ["mpirun", "--spec", "SPEC", "--", "true"],
    ],
    ids=lambda args: " ".join(a for a in args if a != "SPEC"),
)
def test_each_command_parses_the_spec_once(
    spec: Path, parses: list[object], args: list[str]
) -> None:
    result = run(*(str(spec) if a == "SPEC" else a for a in args))
    assert len(parses) == 1, (args, result.output, result.exception)


def test_nodes_add_parses_the_file_and_the_edited_text(spec: Path, parses: list[object]) -> None:
    result = run("nodes", "add", "node-9", "02:b7:00:00:00:09", "--spec", str(spec))
    assert result.exit_code == 0, result.output
    assert len(parses) == 2


def test_agent_parses_the_spec_once_before_it_execs(
    spec: Path, parses: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    execs: list[list[str]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        execs.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", fake_execv)
    result = run("agent", "--spec", str(spec), "--count", "1")
    assert result.exit_code == 0, result.output
    assert len(execs) == 1 and "--key-fd" in execs[0]
    assert len(parses) == 1


def test_clients_given_a_url_read_no_spec(tmp_path: Path, parses: list[object]) -> None:
    os.chdir(tmp_path)  # no bramble.toml here
    for command in ("status", "top"):
        result = run(command, "--url", "http://127.0.0.1:9")
        assert "no master answering" in str(result.exception)
    assert parses == []
