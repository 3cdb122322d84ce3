"""`bramble nodes add|list`: edit and show the spec's node list."""

from __future__ import annotations

from typing import Annotated

import typer

from bramble.cli import options
from bramble.cli.options import SpecOpt

app = typer.Typer(help="Edit the spec's node list.", no_args_is_help=True)


@app.command("add")
def nodes_add(
    name: str,
    mac: str,
    address: Annotated[str | None, typer.Option(help="Fixed address.")] = None,
    spec: SpecOpt = None,
) -> None:
    """Add a node to the spec (validated before writing)."""
    from bramble.provision.nodes import add_node

    add_node(options.load(spec), name, mac, address)


@app.command("list")
def nodes_list(spec: SpecOpt = None) -> None:
    """List the spec's nodes."""
    from rich.console import Console

    from bramble.provision.nodes import nodes_table

    Console().print(nodes_table(options.load(spec)))
