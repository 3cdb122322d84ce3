"""The `bramble` command: one Typer app; each command is a thin call into a module below.

Imports of the heavy parts happen inside each command so `bramble --help` and the agent
start fast and small.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bramble.cli import alerts, jobs, keys, lab, nodes, options, wheels
from bramble.cli.options import SpecOpt
from bramble.errors import BrambleError

if TYPE_CHECKING:
    from bramble.cluster import Cluster

app = typer.Typer(
    help="bramble: turn a stack of identical small Linux boards into a working cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# The jobs commands (run, jobs, logs, cancel, exec, hosts, mpirun, scheduler, worker) are
# top-level commands; nodes and lab are groups.
app.add_typer(jobs.app)
app.add_typer(nodes.app, name="nodes")
app.add_typer(alerts.app, name="alerts")
app.add_typer(keys.app, name="keys")
app.add_typer(lab.app, name="lab")
app.add_typer(wheels.app, name="wheels")


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
    spec_only: Annotated[
        bool,
        typer.Option(
            "--spec-only",
            help="Check the spec alone, not the secrets file beside it (a spec kept in a "
            "repository without its secrets).",
        ),
    ] = False,
) -> None:
    """Validate a spec and the secrets file beside it; errors name the file, key, line, fix."""
    from bramble.spec import check_secrets

    cluster = options.load(file or spec)
    nodes = len(cluster.spec.nodes)
    if spec_only or cluster.path is None:
        typer.echo(f"{cluster.path}: ok ({nodes} nodes; secrets not checked)")
        return
    secrets, warning = check_secrets(cluster.path)
    if warning:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    typer.echo(f"{cluster.path}: ok ({nodes} nodes; secrets in {secrets.name})")


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
    count: Annotated[int, typer.Option(help="Stop after this many intervals (0: run on).")] = 0,
    boot_id: Annotated[
        int | None,
        typer.Option(help="Boot id to report (default: the kernel's boot time).", min=1),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="auto, compiled (the C agent: the wheel's, else built with cc on first "
            "start) or python (default: telemetry.engine in the spec, auto)."
        ),
    ] = None,
    prepare: Annotated[
        bool,
        typer.Option(
            "--prepare",
            help="Find the compiled agent, or build it now (as for a node image); print its "
            "path, exit.",
        ),
    ] = False,
    procs_every: Annotated[
        int | None,
        typer.Option(
            help="Send the top processes (by CPU and memory) every this many intervals "
            "(0: never; default: telemetry.procs_every in the spec, 30).",
            min=0,
            max=1_000_000,
        ),
    ] = None,
) -> None:
    """Sample this node and multicast a signed JSON heartbeat every interval."""
    from bramble.telemetry.agent import exec_lean, prepare_compiled

    if prepare:
        typer.echo(prepare_compiled())
        return
    cluster = options.load(spec)
    key_id, key, enrolled = _telemetry_key(cluster)
    exec_lean(
        cluster.spec,
        key_id,
        key,
        node_name=node_name or enrolled,
        interval=interval,
        count=count,
        boot_id=boot_id,
        engine=engine,
        procs_every=procs_every,
    )


def _telemetry_key(cluster: Cluster) -> tuple[str, bytes, str | None]:
    """The key the agent signs with: the node's own (and its enrolled name) when it has
    enrolled (`node.toml` beside the spec), else the cluster's shared key."""
    from bramble.trust.node import CREDENTIALS, read_identity

    if cluster.path is not None:
        identity = read_identity(cluster.path.parent / CREDENTIALS)
        if identity is not None:
            return identity.key_id, identity.key, identity.name
    secrets = cluster.secrets()
    return secrets.telemetry_key_id, secrets.telemetry_key, None


@app.command()
def enroll(
    spec: SpecOpt = None,
    interface: Annotated[
        str | None,
        typer.Option(help="Whose MAC to enroll with (default: network.cluster_interface)."),
    ] = None,
    mac: Annotated[str | None, typer.Option(help="The MAC to enroll with (default: read).")] = None,
    attempts: Annotated[int, typer.Option(help="Give up after this many requests (0: never).")] = 0,
    rotate: Annotated[
        bool,
        typer.Option(
            help="Enrolled already: ask for a new telemetry key and worker certificate "
            "(then restart the agent and the worker, e.g. with --restart)."
        ),
    ] = False,
    if_due: Annotated[
        bool,
        typer.Option(
            "--if-due",
            help="Enrolled already: ask the master (with a proof made with this board's key) "
            "whether its keys are due for rotation, and rotate them if so. The node image's "
            "bramble-rotate.timer runs this every hour.",
        ),
    ] = False,
    restart: Annotated[
        list[str] | None,
        typer.Option(
            metavar="UNIT",
            help="After a rotation, `systemctl restart` this unit (repeat for several), so "
            "the agent and the worker take the new key and certificate.",
        ),
    ] = None,
) -> None:
    """Enroll this board with the master (join.toml beside the spec), once: its own keys,
    made here; asks until enrolled. Does nothing when it has its credentials already.
    With --rotate or --if-due, renew the keys of an enrolled board."""
    import subprocess

    from bramble.trust.node import board_mac, rotate_if_due
    from bramble.trust.node import enroll as enroll_board

    cluster = options.load(spec)
    if cluster.path is None:
        raise BrambleError("enroll needs a spec file: its join.toml is beside it")
    directory = cluster.path.absolute().parent
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    own = mac or board_mac(interface or cluster.spec.network.cluster_interface)
    tls = cluster.tls.directory if cluster.spec.jobs.tls else None
    if rotate and if_due:
        raise BrambleError("--rotate rotates now, --if-due when the master says: give one")
    if if_due:
        found, why = rotate_if_due(
            directory, own, tls_dir=tls, ca_file=cluster.tls.ca_cert, attempts=attempts
        )
        if found is None:
            typer.echo(f"keys not due for rotation ({why})")
            return
        identity = found
        typer.echo(f"rotated ({why}): ", nl=False)
    else:
        identity = enroll_board(
            directory,
            own,
            tls_dir=tls,
            ca_file=cluster.tls.ca_cert,
            attempts=attempts,
            rotate=rotate,
        )
    typer.echo(f"enrolled as {identity.name} (key {identity.key_id})")
    if restart and (rotate or if_due):
        done = subprocess.run(["systemctl", "restart", *restart], check=False)
        if done.returncode != 0:
            raise BrambleError(f"systemctl restart {' '.join(restart)} failed")
        typer.echo(f"restarted {' '.join(restart)}")
    if cluster.found_secrets is not None or cluster.secrets_error is not None:
        typer.echo(
            f"warning: {directory / 'bramble.secrets.toml'} is still on this board and holds "
            "the admin token: delete it (the board signs with its own key now)",
            err=True,
        )


@app.command()
def master(
    spec: SpecOpt = None,
    bind: Annotated[str | None, typer.Option(help="HTTP bind address (default: spec).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: spec).")] = None,
    db: Annotated[Path | None, typer.Option(help="History database (default: spec).")] = None,
) -> None:
    """Run the collector, node table, history, API and dashboard."""
    from bramble.master.main import run_master

    run_master(options.load(spec), bind=bind, port=port, db=db)


@app.command()
def status(
    spec: SpecOpt = None,
    url: Annotated[str | None, typer.Option(help="Master URL (default: from the spec).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the node table from a running master."""
    import json
    import time

    from rich.console import Console

    from bramble.client.http import MasterClient
    from bramble.client.status import status_view

    base = options.master_url(spec, url)
    with MasterClient(base, hint=", or pass --url") as master:
        nodes = master.get("/api/nodes", timeout=5)
        alerts = master.get("/api/alerts", timeout=5)
        health = master.get("/api/health", timeout=5) if not json_out else {}
    if json_out:
        print(json.dumps(nodes, indent=2))
        return
    Console().print(status_view(nodes, base, time.time(), alerts, health))


@app.command()
def top(
    spec: SpecOpt = None,
    url: Annotated[str | None, typer.Option(help="Master URL (default: from the spec).")] = None,
) -> None:
    """A live node table in the terminal; q quits."""
    from bramble.client.top import run_top

    run_top(options.master_url(spec, url))


@app.command()
def demo(
    nodes: Annotated[int, typer.Option(help="How many nodes.")] = 4,
    port: Annotated[int, typer.Option(help="Dashboard port.")] = 8080,
    local: Annotated[
        bool, typer.Option(help="Use local processes on loopback even when root.")
    ] = False,
    jobs: Annotated[
        bool, typer.Option(help="Run the jobs cluster too (a Dask scheduler, a worker per node).")
    ] = True,
) -> None:
    """Bring up a whole cluster on this machine and print the dashboard URL."""
    from bramble.demo import run_demo

    run_demo(nodes=nodes, port=port, force_local=local, jobs=jobs)


# --- provisioning -----------------------------------------------------------------------


@app.command()
def render(
    spec: SpecOpt = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("out"),
) -> None:
    """Render every config file of the master and the node image into OUT/master, OUT/node."""
    from bramble.provision.render import render_to_dir

    render_to_dir(options.load(spec), out)


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
    from bramble.provision.apply import apply_role, check_role

    check_role(role)
    apply_role(options.load(spec), role=role, root=root, dry_run=dry_run, checks=checks)


def main() -> None:
    """Console entry point: run the app, printing our own errors in one line (exit code 2)."""
    try:
        app()
    except BrambleError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
