"""`bramble nodes add|list`: edit and show the spec's node list; `bramble nodes
pending|enrolled|approve|revoke`: the boards that asked to enroll, through the master."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bramble.cli import options
from bramble.cli.options import SpecOpt

if TYPE_CHECKING:
    from bramble.client.http import MasterClient

app = typer.Typer(
    help="Edit the spec's node list; approve and revoke enrolled boards.", no_args_is_help=True
)
UrlOpt = Annotated[
    str | None, typer.Option(help="The master's URL (default: $BRAMBLE_MASTER_URL, the spec's).")
]


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


def admin_client(spec: Path | None, url: str | None) -> MasterClient:
    """A client of the master, with the admin token of the spec's secrets."""
    from bramble.client.http import MasterClient
    from bramble.jobs.config import jobs_config

    cluster = options.load(spec)
    base = url or jobs_config(cluster).master_url
    return MasterClient(base, token=cluster.secrets().admin_token, hint=", or pass --url")


@app.command("pending")
def nodes_pending(spec: SpecOpt = None, url: UrlOpt = None) -> None:
    """List the boards waiting for approval (admin token)."""
    from rich.console import Console

    from bramble.client.trust import pending_table

    with admin_client(spec, url) as master:
        Console().print(pending_table(master))


@app.command("enrolled")
def nodes_enrolled(spec: SpecOpt = None, url: UrlOpt = None) -> None:
    """List the enrolled boards, revoked ones too (admin token)."""
    from rich.console import Console

    from bramble.client.trust import enrolled_table

    with admin_client(spec, url) as master:
        Console().print(enrolled_table(master))


@app.command("approve")
def nodes_approve(
    who: Annotated[str, typer.Argument(help="The waiting board's MAC, or its spec name.")],
    name: Annotated[
        str | None, typer.Option(help="Its name (default: the spec's for its MAC).")
    ] = None,
    spec: SpecOpt = None,
    url: UrlOpt = None,
) -> None:
    """Enroll a waiting board: it gets its name and its own key works at once."""
    from bramble.client.trust import approve

    with admin_client(spec, url) as master:
        typer.echo(approve(master, who, name))


@app.command("refuse")
def nodes_refuse(
    who: Annotated[str, typer.Argument(help="The waiting board's MAC, or its spec name.")],
    spec: SpecOpt = None,
    url: UrlOpt = None,
) -> None:
    """Refuse a waiting board: its request goes, and the same key asking again is refused."""
    from bramble.client.trust import refuse

    with admin_client(spec, url) as master:
        typer.echo(refuse(master, who))


@app.command("revoke")
def nodes_revoke(name: str, spec: SpecOpt = None, url: UrlOpt = None) -> None:
    """End a node's credentials at once: its heartbeats are refused, its worker removed."""
    from bramble.client.trust import revoke

    with admin_client(spec, url) as master:
        typer.echo(revoke(master, name))
