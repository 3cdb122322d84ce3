"""The jobs commands of the `bramble` CLI: run, jobs, logs, cancel, exec, hosts, mpirun,
scheduler, worker. The root app adds them as top-level commands.

Commands that change state send the admin token from the spec's secrets file; the calls
themselves are in `bramble.client.jobs`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bramble.cli import options
from bramble.cli.options import SpecOpt
from bramble.errors import BrambleError

if TYPE_CHECKING:
    from bramble.client.http import MasterClient
    from bramble.cluster import Cluster
    from bramble.jobs.config import JobsConfig

app = typer.Typer()
"""The jobs commands; the root app adds them as top-level commands."""
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _load(spec: Path | None) -> tuple[Cluster, JobsConfig]:
    """The cluster (--spec, else $BRAMBLE_SPEC, else the usual search) and its jobs settings."""
    from bramble.jobs.config import jobs_config

    cluster = options.load(spec, env=True)
    return cluster, jobs_config(cluster)


def _master(spec: Path | None, *, admin: bool = False) -> tuple[Cluster, JobsConfig, MasterClient]:
    """The cluster, its jobs settings and a client of its master (with the admin token)."""
    from bramble.client.http import MasterClient

    cluster, config = _load(spec)
    token = cluster.secrets().admin_token if admin else None
    return cluster, config, MasterClient(config.master_url, token=token)


def _args(ctx: typer.Context) -> list[str]:
    args = list(ctx.args)
    return args[1:] if args and args[0] == "--" else args


@app.command(context_settings=EXTRA)
def run(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="Job file (local path or under jobs_dir).")],
    spec: SpecOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print output until the job ends.")
    ] = False,
) -> None:
    """Submit a job file to the master: bramble run FILE [ARGS...]."""
    from bramble.client.jobs import follow_logs, submit

    _, _, master = _master(spec, admin=True)
    record = submit(master, file, _args(ctx))
    job_id = int(record["id"])
    if not follow:
        typer.echo(f"job {job_id} {record['state']}: {record['file']}")
        return
    state = follow_logs(master, job_id, follow=True)
    final = master.get(f"/api/jobs/{job_id}")
    typer.echo(f"job {job_id} {state} (exit {final['exit_status']})", err=True)
    raise typer.Exit(0 if state == "done" else 1)


@app.command()
def jobs(
    spec: SpecOpt = None,
    limit: Annotated[int, typer.Option(help="Newest N jobs.")] = 20,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List jobs, newest first."""
    _, _, master = _master(spec)
    rows: list[dict[str, Any]] = master.get("/api/jobs", limit=limit, state=state or None)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console

    from bramble.client.jobs import jobs_table

    Console().print(jobs_table(rows))


@app.command()
def logs(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="Job id.")],
    spec: SpecOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
) -> None:
    """Print a job's captured stdout and stderr."""
    from bramble.client.jobs import follow_logs

    follow_logs(_master(spec, admin=True)[2], job_id, follow=follow)  # output needs the token


@app.command()
def cancel(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="Job id.")],
    spec: SpecOpt = None,
) -> None:
    """Cancel a queued or running job."""
    record = _master(spec, admin=True)[2].post(f"/api/jobs/{job_id}/cancel")
    typer.echo(f"job {job_id} {record['state']}")


@app.command("exec", context_settings=EXTRA)
def exec_(
    ctx: typer.Context,
    spec: SpecOpt = None,
    nodes: Annotated[
        str | None,
        typer.Option("--nodes", "-w", help="Nodes: names, globs, ranges (node-[1-3])."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per node.")] = 60.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run a shell command on every selected node: bramble exec [--nodes SEL] -- CMD..."""
    from bramble.client.jobs import exec_on_nodes
    from bramble.jobs.exec import NodeResult, format_results, worst_status

    args = _args(ctx)
    if not args:
        raise BrambleError("nothing to run: bramble exec [--nodes SEL] -- CMD...")
    command = args[0] if len(args) == 1 else " ".join(args)
    resp = exec_on_nodes(_master(spec, admin=True)[2], command, nodes, timeout)
    results = [NodeResult(**r) for r in resp["results"]]
    if json_out:
        typer.echo(json.dumps(resp, indent=2))
    else:
        typer.echo(format_results(results), nl=False)
    raise typer.Exit(worst_status(results))


@app.command()
def hosts(
    spec: SpecOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="mpi, hosts, ansible or dask.")] = "mpi",
) -> None:
    """Print the live nodes as an MPI hostfile, /etc/hosts block, inventory or scheduler."""
    from bramble.client.jobs import live_nodes
    from bramble.jobs.hosts import FORMATS, render

    if fmt not in FORMATS:
        raise BrambleError(f"unknown --format {fmt!r} (one of: {', '.join(FORMATS)})")
    cluster, config, master = _master(spec)
    live = [] if fmt == "dask" else live_nodes(master)
    out = render(fmt, live, domain=cluster.spec.network.domain, scheduler=config.scheduler)
    typer.echo(out, nl=False)


@app.command(context_settings=EXTRA)
def mpirun(
    ctx: typer.Context,
    spec: SpecOpt = None,
    n: Annotated[int | None, typer.Option("-n", "--np", help="Ranks (default: all slots).")] = None,
    launcher: Annotated[
        str | None, typer.Option(help="Remote launcher instead of ssh (plm_rsh_agent).")
    ] = None,
    netns: Annotated[
        bool, typer.Option(help="Start ranks in the lab node's namespaces (no SSH).")
    ] = False,
    by_node: Annotated[
        bool,
        typer.Option("--by-node", help="Place ranks round robin over the nodes."),
    ] = False,
) -> None:
    """Run an MPI program across the live nodes: bramble mpirun [-n N] -- PROG..."""
    from bramble.client.jobs import live_nodes
    from bramble.jobs.mpirun import run_mpirun

    cluster, _, master = _master(spec)
    subnet = str(cluster.spec.network.subnet)
    hosts = live_nodes(master)
    raise typer.Exit(
        run_mpirun(
            hosts, _args(ctx), n=n, launcher=launcher, netns=netns, subnet=subnet, by_node=by_node
        )
    )


@app.command()
def scheduler(
    spec: SpecOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: spec).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: spec).")] = None,
) -> None:
    """Run the Dask scheduler with the cluster's TLS (on the master)."""
    from bramble.jobs.servers import run_scheduler

    run_scheduler(_load(spec)[1], host=host, port=port)


@app.command()
def worker(
    spec: SpecOpt = None,
    name: Annotated[str | None, typer.Option(help="Node name (default: hostname).")] = None,
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    nthreads: Annotated[int | None, typer.Option(help="Threads (default: cores).")] = None,
    memory_limit: Annotated[
        int | None, typer.Option(help="Bytes (default: the node's RAM).")
    ] = None,
    light: Annotated[
        bool,
        typer.Option(
            "--light",
            help="Fewer wake-ups when idle: no task profiler, event-loop and memory checks "
            "once a second (as the lab runs many workers on one machine).",
        ),
    ] = False,
) -> None:
    """Run this node's Dask worker with the cluster's TLS."""
    from bramble.jobs.servers import run_worker

    run_worker(
        _load(spec)[1],
        name=name,
        host=host,
        nthreads=nthreads,
        memory_limit=memory_limit,
        light=light,
    )
