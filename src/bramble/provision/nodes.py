"""`bramble nodes add|list`: edit and show the spec's node list, keeping its comments."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import tomlkit

from bramble.errors import BrambleError
from bramble.provision.apply import write_atomic
from bramble.spec import Spec, parse_spec

if TYPE_CHECKING:
    from rich.table import Table

    from bramble.cluster import Cluster

log = logging.getLogger(__name__)


_HEADER = re.compile(r"^\s*\[")
_NODES = re.compile(r"^\s*\[\[\s*nodes\s*\]\]")
_KEY = re.compile(r"^\s*[A-Za-z0-9_\-\"']+\s*=")


def with_node(text: str, name: str, mac: str, address: str | None, file: str) -> tuple[str, Spec]:
    """The spec TEXT with a new `[[nodes]]` table, and the spec it makes (SpecError if invalid).

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
    return new_text, parse_spec(new_text, file)


def add_node(cluster: Cluster, name: str, mac: str, address: str | None) -> Spec:
    """Add a node to the cluster's spec file, validating the result before writing it atomically."""
    path, text = cluster.path, cluster.text
    if path is None or text is None:
        raise BrambleError("this spec was not read from a file: nowhere to add the node")
    new_text, spec = with_node(text, name, mac, address, str(path))
    mode = path.stat().st_mode & 0o7777
    write_atomic(path, new_text, mode)
    node = spec.node(name)
    where = str(node.address) if node and node.address else "a dynamic lease"
    print(f"added {name} ({node.mac if node else mac}, {where}) to {path}")
    print("next: `bramble apply --role master` on the master")
    return spec


def nodes_table(cluster: Cluster) -> Table:
    """The spec's nodes as a table: name, MAC, address (or dynamic), FQDN."""
    from rich.table import Table

    spec = cluster.spec
    table = Table(title=f"{len(spec.nodes)} nodes in {cluster.path}")
    for column in ("name", "MAC", "address", "FQDN"):
        table.add_column(column)
    for node in spec.nodes:
        table.add_row(
            node.name,
            node.mac,
            str(node.address) if node.address else "dynamic",
            spec.fqdn(node.name),
        )
    return table
