"""The `bramble` command: one Typer app; each command is a thin call into a module below.

Imports of the heavy parts happen inside each command so `bramble --help` and the agent
start fast and small.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bramble.errors import BrambleError

app = typer.Typer(
    help="bramble: turn a stack of identical small Linux boards into a working cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
nodes_app = typer.Typer(help="Edit the spec's node list.", no_args_is_help=True)
lab_app = typer.Typer(
    help="A whole cluster in network namespaces on this machine (root).", no_args_is_help=True
)
app.add_typer(nodes_app, name="nodes")
app.add_typer(lab_app, name="lab")

SpecOpt = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        help="Spec file (default: ./bramble.toml, then /etc/bramble/bramble.toml).",
        show_default=False,
    ),
]


# --- spec -------------------------------------------------------------------------------


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write the spec.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Write a commented bramble.toml and its secrets file (keys, admin token; mode 0600)."""
    from bramble.init import init_directory

    for path in init_directory(directory, force=force):
        typer.echo(f"wrote {path}")
    spec_file = directory / "bramble.toml"
    typer.echo(f"next: put your boards' MACs in {spec_file}, then `bramble check {spec_file}`")


@app.command()
def check(
    file: Annotated[Path | None, typer.Argument(help="Spec file to validate.")] = None,
    spec: SpecOpt = None,
) -> None:
    """Validate a spec; errors name the file, key, line and the fix."""
    from bramble.spec import find_spec_path, load_spec

    path = find_spec_path(file or spec)
    loaded = load_spec(path)
    typer.echo(f"{path}: ok ({len(loaded.nodes)} nodes)")


# --- telemetry and master ---------------------------------------------------------------------


@app.command()
def agent(
    spec: SpecOpt = None,
    node_name: Annotated[
        str | None, typer.Option(help="Node name to report (default: the hostname).")
    ] = None,
    interval: Annotated[
        float | None, typer.Option(help="Seconds between samples (default: from the spec).")
    ] = None,
    count: Annotated[int, typer.Option(help="Stop after this many datagrams (0: run on).")] = 0,
    boot_id: Annotated[
        int | None,
        typer.Option(help="Boot id to report (default: the kernel's boot time).", min=1),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="auto, compiled (the C agent, built with cc on first start) or python "
            "(default: telemetry.engine in the spec, auto)."
        ),
    ] = None,
    prepare: Annotated[
        bool,
        typer.Option(
            "--prepare",
            help="Build the compiled agent now (as for a node image), print its path, exit.",
        ),
    ] = False,
) -> None:
    """Sample this node and multicast a signed JSON heartbeat every interval."""
    from bramble.telemetry.agent import prepare_compiled, run_from_cli

    if prepare:
        typer.echo(prepare_compiled())
        return
    run_from_cli(
        spec,
        node_name=node_name,
        interval=interval,
        count=count,
        boot_id=boot_id,
        engine=engine,
    )


@app.command()
def master(
    spec: SpecOpt = None,
    bind: Annotated[str | None, typer.Option(help="HTTP bind address (default: spec).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: spec).")] = None,
    db: Annotated[Path | None, typer.Option(help="History database (default: spec).")] = None,
) -> None:
    """Run the collector, node table, history, API and dashboard."""
    from bramble.master.service import run_from_cli

    run_from_cli(spec, bind=bind, port=port, db=db)


@app.command()
def status(
    spec: SpecOpt = None,
    url: Annotated[str | None, typer.Option(help="Master URL (default: from the spec).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the node table from a running master."""
    from bramble.master.client import print_status

    print_status(spec, url=url, as_json=json_out)


@app.command()
def top(
    spec: SpecOpt = None,
    url: Annotated[str | None, typer.Option(help="Master URL (default: from the spec).")] = None,
) -> None:
    """A live node table in the terminal; q quits."""
    from bramble.master.top import run_top

    run_top(spec, url=url)


@app.command()
def demo(
    nodes: Annotated[int, typer.Option(help="How many nodes.")] = 4,
    port: Annotated[int, typer.Option(help="Dashboard port.")] = 8080,
    local: Annotated[
        bool, typer.Option(help="Use local processes on loopback even when root.")
    ] = False,
) -> None:
    """Bring up a whole cluster on this machine and print the dashboard URL."""
    from bramble.demo import run_demo

    run_demo(nodes=nodes, port=port, force_local=local)


# --- provisioning -----------------------------------------------------------------------


@app.command()
def render(
    spec: SpecOpt = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("out"),
) -> None:
    """Render every config file of the master and the node image into OUT/master, OUT/node."""
    from bramble.provision.render import render_to_dir

    render_to_dir(spec, out)


@app.command()
def apply(
    role: Annotated[str, typer.Option(help="master or node.")],
    spec: SpecOpt = None,
    root: Annotated[Path | None, typer.Option(help="Install under this root instead of /.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Show the diff, change nothing.")] = False,
    checks: Annotated[
        bool | None,
        typer.Option(
            help="Check first that bramble and the services' packages are installed "
            "(default: on for /, off with --root; --checks checks under ROOT).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Install the rendered files for ROLE: diff, back up, write atomically, reload."""
    from bramble.provision.apply import apply_from_cli

    apply_from_cli(spec, role=role, root=root, dry_run=dry_run, checks=checks)


@nodes_app.command("add")
def nodes_add(
    name: str,
    mac: str,
    address: Annotated[str | None, typer.Option(help="Fixed address.")] = None,
    spec: SpecOpt = None,
) -> None:
    """Add a node to the spec (validated before writing)."""
    from bramble.provision.nodes import add_node

    add_node(spec, name, mac, address)


@nodes_app.command("list")
def nodes_list(spec: SpecOpt = None) -> None:
    """List the spec's nodes."""
    from bramble.provision.nodes import list_nodes

    list_nodes(spec)


# --- lab --------------------------------------------------------------------------------------


LabPrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        envvar="BRAMBLE_LAB_PREFIX",
        help="Lab name: every namespace and link carries it (default: lab).",
        show_default=False,
    ),
]


@lab_app.command("up")
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

    up(spec, nodes=nodes, prefix=prefix, port=port, jobs=jobs)


@lab_app.command("status")
def lab_status(spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Show the lab's namespaces, daemons and checks."""
    from bramble.lab.commands import show_status

    show_status(spec, prefix=prefix)


@lab_app.command("down")
def lab_down(spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Remove every namespace, link, mount and process of the lab."""
    from bramble.lab.commands import down

    if down(spec, prefix=prefix):
        raise typer.Exit(1)


@lab_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def lab_exec(
    ctx: typer.Context, node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None
) -> None:
    """Run a command inside a lab node or the master: bramble lab exec NODE -- CMD...

    $BRAMBLE_SPEC is set to the lab's spec, so `bramble lab exec master -- bramble run
    /mnt/jobs/pi.py` submits a job to the lab's cluster.
    """
    from bramble.lab.commands import exec_in

    raise typer.Exit(exec_in(spec, node, list(ctx.args), prefix=prefix))


@lab_app.command("stop")
def lab_stop(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Power a lab node off: its processes end and its link goes down."""
    from bramble.lab.commands import fault

    fault(spec, node, "stop", prefix=prefix)


@lab_app.command("start")
def lab_start(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Power a lab node on again."""
    from bramble.lab.commands import fault

    fault(spec, node, "start", prefix=prefix)


@lab_app.command("cut")
def lab_cut(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Pull a lab node's cable."""
    from bramble.lab.commands import fault

    fault(spec, node, "cut", prefix=prefix)


@lab_app.command("heal")
def lab_heal(node: str, spec: SpecOpt = None, prefix: LabPrefixOpt = None) -> None:
    """Plug a lab node's cable back in."""
    from bramble.lab.commands import fault

    fault(spec, node, "heal", prefix=prefix)


# --- jobs -------------------------------------------------------------------------------------
# Registered by bramble.jobs.commands (run, jobs, logs, cancel, exec, hosts, mpirun).


def _register_jobs() -> None:
    from bramble.jobs.commands import register

    register(app, SpecOpt)


def _register_software() -> None:
    from bramble.software.commands import register

    register(app)


def main() -> None:
    """Console entry point: run the app, printing our own errors in one line (exit code 2)."""
    _register_jobs()
    _register_software()
    try:
        app()
    except BrambleError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
