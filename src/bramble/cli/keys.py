"""`bramble keys rotate`: move the cluster from the shared telemetry key to per-node keys,
mark the nodes' own keys due for rotation, or rotate the join token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from bramble.cli import options
from bramble.cli.nodes import UrlOpt, admin_client
from bramble.cli.options import SpecOpt

if TYPE_CHECKING:
    from bramble.cluster import Cluster

app = typer.Typer(help="The cluster's telemetry keys.", no_args_is_help=True)


@app.command("rotate")
def keys_rotate(
    force: Annotated[
        bool, typer.Option(help="Retire the shared key even if some nodes have not enrolled.")
    ] = False,
    join: Annotated[
        bool,
        typer.Option(
            "--join",
            help="Rotate the join token instead (in the secrets file beside the spec); the "
            "old one still enrolls boards for --overlap-days.",
        ),
    ] = False,
    overlap_days: Annotated[float, typer.Option(min=0, help="With --join.")] = 7.0,
    nodes: Annotated[
        bool,
        typer.Option(
            "--nodes",
            help="Rotate the nodes' own keys instead: every enrolled node (or each --node) "
            "is due now, and rotates its telemetry key and worker certificate at its next "
            "hourly check, with an overlap so no heartbeat is lost.",
        ),
    ] = False,
    node: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="With --nodes: this node only (repeat for several)."),
    ] = None,
    spec: SpecOpt = None,
    url: UrlOpt = None,
) -> None:
    """Retire the shared telemetry key: from now on only enrolled nodes' own keys verify.
    With --nodes, make the enrolled nodes rotate their own keys and certificates; with
    --join, rotate the join token the node image carries."""
    from bramble.client.trust import mark_rotation, retire_shared_key
    from bramble.errors import BrambleError

    if node and not nodes:
        raise BrambleError("--node NAME goes with --nodes")
    if nodes and join:
        raise BrambleError("--nodes and --join rotate different things: give one")
    cluster = options.load(spec)
    if join:
        _rotate_join(cluster, overlap_days)
        return
    if nodes:
        with admin_client(spec, url) as master:
            typer.echo(mark_rotation(master, node or None))
        return
    with admin_client(spec, url) as master:
        typer.echo(retire_shared_key(master, cluster.spec, force=force))


def _rotate_join(cluster: Cluster, overlap_days: float) -> None:
    import datetime
    import time

    from bramble.errors import BrambleError
    from bramble.provision.apply import write_atomic
    from bramble.provision.render import secrets_toml
    from bramble.spec import secrets_path
    from bramble.trust.join import rotate_join

    if cluster.path is None:
        raise BrambleError("this spec was not read from a file: no secrets file to rotate in")
    new = rotate_join(cluster.secrets(), time.time(), overlap_days)
    path = secrets_path(cluster.path)
    write_atomic(path, secrets_toml(new), 0o600, keep_mode=False)
    until = datetime.datetime.fromtimestamp(new.join_previous_until).strftime("%Y-%m-%d %H:%M")
    typer.echo(
        f"join token rotated in {path}; the old one enrolls boards until {until}. Next: "
        "`bramble render` for the new node image, and restart the master (`bramble apply "
        "--role master`) so it takes the new token"
    )
