"""`bramble nodes add|list`: validated edits that keep the spec's comments."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from bramble.cluster import load_cluster
from bramble.errors import SpecError
from bramble.init import spec_text
from bramble.provision.nodes import add_node, nodes_table, with_node
from bramble.spec import load_spec


@pytest.fixture
def init_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bramble.toml"
    path.write_text(spec_text())
    path.chmod(0o640)
    return path


def test_add_keeps_comments_and_places_node_after_the_others(
    init_spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = init_spec.read_text()
    spec = add_node(load_cluster(init_spec), "node-5", "B8-27-EB-00-00-05", None)
    after = init_spec.read_text()
    assert spec.node("node-5") is not None and spec.node("node-5").mac == "b8:27:eb:00:00:05"  # type: ignore[union-attr]
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in after.splitlines() if line.lstrip().startswith("#")]
    # the new table sits after node-4, before the comment that introduces [[shares]]
    assert after.index('name = "node-5"') < after.index("# Directories the master exports")
    assert after.index('name = "node-4"') < after.index('name = "node-5"')
    assert init_spec.stat().st_mode & 0o777 == 0o640
    assert "added node-5" in capsys.readouterr().out
    assert [n.name for n in load_spec(init_spec).nodes][-1] == "node-5"


def test_add_with_fixed_address(init_spec: Path) -> None:
    spec = add_node(load_cluster(init_spec), "node-7", "b8:27:eb:00:00:07", "10.42.0.17")
    assert str(spec.node("node-7").address) == "10.42.0.17"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "mac", "address", "message"),
    [
        ("node-1", "b8:27:eb:00:00:99", None, "duplicate name"),
        ("node-9", "b8:27:eb:00:00:01", None, "duplicate MAC"),
        ("node-9", "not-a-mac", None, "not a MAC address"),
        ("Node_9", "b8:27:eb:00:00:09", None, "not a host name"),
        ("node-9", "b8:27:eb:00:00:09", "10.42.0.150", "inside the DHCP range"),
        ("node-9", "b8:27:eb:00:00:09", "10.9.9.9", "outside the subnet"),
    ],
)
def test_invalid_add_leaves_the_file_untouched(
    init_spec: Path, name: str, mac: str, address: str | None, message: str
) -> None:
    before = init_spec.read_bytes()
    with pytest.raises(SpecError, match=message):
        add_node(load_cluster(init_spec), name, mac, address)
    assert init_spec.read_bytes() == before
    assert [p.name for p in init_spec.parent.iterdir()] == ["bramble.toml"]


def test_add_to_a_spec_without_nodes() -> None:
    text = '# nothing but a comment\n[network]\ndomain = "lab"  # keep me\n'
    new, spec = with_node(text, "a", "dc:a6:32:00:00:01", None, "t.toml")
    assert new.startswith(text)
    assert [n.name for n in spec.nodes] == ["a"] and spec.network.domain == "lab"


def test_list_nodes(init_spec: Path) -> None:
    add_node(load_cluster(init_spec), "node-5", "b8:27:eb:00:00:05", None)
    console = Console(file=io.StringIO(), width=120)
    console.print(nodes_table(load_cluster(init_spec)))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "node-1.cluster" in out and "10.42.0.11" in out
    row = next(line for line in out.splitlines() if "node-5" in line)
    assert "dynamic" in row and "b8:27:eb:00:00:05" in row


def test_cli_nodes_add_then_list(init_spec: Path) -> None:
    bramble = shutil.which("bramble")
    if bramble is None:
        pytest.skip("bramble is not on PATH (pip install -e .)")
    add = subprocess.run(
        [bramble, "nodes", "add", "node-6", "b8:27:eb:00:00:06", "--spec", str(init_spec)],
        capture_output=True,
        text=True,
    )
    assert add.returncode == 0, add.stderr
    bad = subprocess.run(
        [bramble, "nodes", "add", "node-6", "b8:27:eb:00:00:0a", "--spec", str(init_spec)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "duplicate name" in bad.stderr
    listed = subprocess.run(
        [bramble, "nodes", "list", "--spec", str(init_spec)],
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0 and "node-6" in listed.stdout
