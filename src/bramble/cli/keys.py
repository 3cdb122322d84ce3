"""`bramble keys rotate`: move the cluster from the shared telemetry key to per-node keys."""

from __future__ import annotations

from typing import Annotated

import typer

from bramble.cli import options
from bramble.cli.nodes import UrlOpt, admin_client
from bramble.cli.options import SpecOpt

app = typer.Typer(help="The cluster's telemetry keys.", no_args_is_help=True)


@app.command("rotate")
def keys_rotate(
    force: Annotated[
        bool, typer.Option(help="Retire the shared key even if some nodes have not enrolled.")
    ] = False,
    spec: SpecOpt = None,
    url: UrlOpt = None,
) -> None:
    """Retire the shared telemetry key: from now on only enrolled nodes' own keys verify."""
    from bramble.client.trust import retire_shared_key

    cluster = options.load(spec)
    with admin_client(spec, url) as master:
        typer.echo(retire_shared_key(master, cluster.spec, force=force))
