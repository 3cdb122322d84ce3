"""`bramble lab ...`: a whole cluster in network namespaces on this machine (root).

Only `lab up` reads a spec; the other commands find the running lab by its prefix (their
--spec is accepted and not needed).
"""

from __future__ import annotations

from typing import Annotated

import typer

from bramble.cli import options
from bramble.cli.options import SpecOpt

app = typer.Typer(
    help="A whole cluster in network namespaces on this machine (root).", no_args_is_help=True
)


LabPrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        envvar="BRAMBLE_LAB_PREFIX",
        help="Lab name: every namespace and link carries it (default: lab).",
        show_default=False,
    ),
]


@app.command("up")
def lab_up(
    nodes: Annotated[int | None, typer.Option(help="Nodes (default: the spec's).")] = None,
    spec: SpecOpt = None,
    prefix: LabPrefixOpt = None,
    port: Annotated[
        int | None, typer.Option(help="Dashboard port on 127.0.0.1 (default: the spec's).")
    ] = None,
    jobs: Annotated[
        bool,
        typer.Option(help="Run the Dask scheduler on the master and a worker on every node (TLS)."),
    ] = True,
) -> None:
    """Create the lab cluster (idempotent; cleans up a crashed lab first)."""
    from bramble.lab.commands import up

    # --nodes without --spec: the built-in spec; otherwise the spec's nodes (the first N).
    source = None if spec is None and nodes is not None else options.load(spec)
    up(source, nodes=nodes, prefix=prefix, port=port, jobs=jobs)


@app.command("status")
def lab_status(spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Show the lab's namespaces, daemons and checks."""
    from bramble.lab.commands import show_status

    show_status(prefix=prefix)


@app.command("down")
def lab_down(spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Remove every namespace, link, mount and process of the lab."""
    from bramble.lab.commands import down

    if down(prefix=prefix):
        raise typer.Exit(1)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lab_exec(
    ctx: typer.Context, node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None
) -> None:
    """Run a command inside a lab node or the master: bramble lab exec NODE -- CMD...

    $BRAMBLE_SPEC is set to the lab's spec, so `bramble lab exec master -- bramble run
    /mnt/jobs/pi.py` submits a job to the lab's cluster.
    """
    from bramble.lab.commands import exec_in

    raise typer.Exit(exec_in(node, list(ctx.args), prefix=prefix))


@app.command("add")
def lab_add(
    name: Annotated[str | None, typer.Argument(help="The new board's name.")] = None,
    mac: Annotated[
        str | None,
        typer.Option(help="Its MAC (default: a new one, added to the lab's spec)."),
    ] = None,
    spec: SpecOpt = None,
    prefix: LabPrefixOpt = None,
) -> None:
    """Plug in a new board: it enrolls on its own (a MAC of the spec), or waits for approval."""
    from bramble.lab.plug import add

    add(name, mac, prefix=prefix, say=typer.echo)


@app.command("stop")
def lab_stop(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Power a lab node off: its processes end and its link goes down."""
    from bramble.lab.commands import fault

    fault(node, "stop", prefix=prefix)


@app.command("start")
def lab_start(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Power a lab node on again."""
    from bramble.lab.commands import fault

    fault(node, "start", prefix=prefix)


@app.command("cut")
def lab_cut(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Pull a lab node's cable."""
    from bramble.lab.commands import fault

    fault(node, "cut", prefix=prefix)


@app.command("heal")
def lab_heal(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Plug a lab node's cable back in."""
    from bramble.lab.commands import fault

    fault(node, "heal", prefix=prefix)


@app.command("freeze")
def lab_freeze(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Hang a lab node: every process of it stops (SIGSTOP), silent, connections open."""
    from bramble.lab.commands import fault

    fault(node, "freeze", prefix=prefix)


@app.command("thaw")
def lab_thaw(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Let a frozen lab node's processes go on (SIGCONT)."""
    from bramble.lab.commands import fault

    fault(node, "thaw", prefix=prefix)


@app.command("throttle")
def lab_throttle(
    node: str,
    undervoltage: Annotated[
        bool, typer.Option(help="As on a weak supply: under-voltage and throttled.")
    ] = False,
    clear: Annotated[bool, typer.Option(help="End it (the since-boot flags stay).")] = False,
    spec: SpecOpt = None,
    prefix: LabPrefixOpt = None,
) -> None:
    """Throttle a lab node as its Pi firmware would say it:
    too hot, or on a weak supply with --undervoltage;
    --clear ends it (the since-boot flags stay)."""
    from bramble.lab.commands import throttle

    throttle(node, undervoltage=undervoltage, clear=clear, prefix=prefix)
