"""`bramble nodes add|list`: edit and show the spec's node list, keeping its comments."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import tomlkit

from bramble.provision.apply import write_atomic
from bramble.spec import Spec, find_spec_path, load_spec, parse_spec

log = logging.getLogger(__name__)


_HEADER = re.compile(r"^\s*\[")
_NODES = re.compile(r"^\s*\[\[\s*nodes\s*\]\]")
_KEY = re.compile(r"^\s*[A-Za-z0-9_\-\"']+\s*=")


def add_node_text(text: str, name: str, mac: str, address: str | None, file: str) -> str:
    """The spec TEXT with a new `[[nodes]]` table; validated (SpecError) before it is returned.

    The table goes right after the last node's keys, so every comment stays where it was
    (tomlkit alone would append it after the comments that precede the next table).
    """
    entry: dict[str, str] = {"name": name, "mac": mac.strip().lower().replace("-", ":")}
    if address:
        entry["address"] = address
    block = tomlkit.dumps({"nodes": [entry]}).strip() + "\n"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    last = max((i for i, line in enumerate(lines) if _NODES.match(line)), default=None)
    if last is None:
        new_text = "".join(lines) + "\n" + block
    else:
        end = last
        for i in range(last + 1, len(lines)):
            if _HEADER.match(lines[i]):
                break
            if _KEY.match(lines[i]):
                end = i
        lines.insert(end + 1, "\n" + block)
        new_text = "".join(lines)
    parse_spec(new_text, file)
    return new_text


def add_node(spec_path: Path | None, name: str, mac: str, address: str | None) -> Spec:
    """Add a node to the spec file, validating the result before writing it atomically."""
    path = find_spec_path(spec_path)
    load_spec(path)
    text = path.read_text("utf-8")
    new_text = add_node_text(text, name, mac, address, str(path))
    mode = path.stat().st_mode & 0o7777
    write_atomic(path, new_text, mode)
    spec = load_spec(path)
    node = spec.node(name)
    where = str(node.address) if node and node.address else "a dynamic lease"
    print(f"added {name} ({node.mac if node else mac}, {where}) to {path}")
    print("next: `bramble apply --role master` on the master")
    return spec


def list_nodes(spec_path: Path | None) -> None:
    """Print the spec's nodes as a table: name, MAC, address (or dynamic), FQDN."""
    from rich.console import Console
    from rich.table import Table

    path = find_spec_path(spec_path)
    spec = load_spec(path)
    table = Table(title=f"{len(spec.nodes)} nodes in {path}")
    for column in ("name", "MAC", "address", "FQDN"):
        table.add_column(column)
    for node in spec.nodes:
        table.add_row(
            node.name,
            node.mac,
            str(node.address) if node.address else "dynamic",
            spec.fqdn(node.name),
        )
    Console().print(table)
