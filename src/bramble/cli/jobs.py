"""The jobs commands of the `bramble` CLI: run, jobs, logs, cancel, exec, hosts, mpirun,
scheduler, worker. The root app adds them as top-level commands.

Commands that change state talk to the master's API with the admin token from the spec's
secrets file; the master runs job drivers and execs, so the CLI needs no Dask certificate.
"""

from __future__ import annotations

import functools
import getpass
import json
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bramble.cli.options import SpecOpt
from bramble.errors import BrambleError, MasterUnreachableError
from bramble.jobs.config import JobsConfig, admin_token, load_config

if TYPE_CHECKING:
    import httpx

app = typer.Typer()
"""The jobs commands; the root app adds them as top-level commands."""
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _submitter() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@functools.cache
def _http() -> httpx.Client:
    """The command's one HTTP client.

    Its connection pool and TLS setup are made once rather than per request (`bramble run
    --follow` makes several).
    """
    import httpx

    return httpx.Client()


def _request(
    config: JobsConfig,
    method: str,
    path: str,
    *,
    admin: bool = False,
    timeout: float = 30.0,
    **kwargs: Any,
) -> Any:
    import httpx

    headers = {}
    if admin:
        headers["Authorization"] = f"Bearer {admin_token(config.spec_path)}"
    url = f"{config.master_url}{path}"
    try:
        resp = _http().request(method, url, headers=headers, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise MasterUnreachableError(f"cannot reach the master at {url}: {exc}") from exc
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise BrambleError(f"{method} {path}: {resp.status_code} {detail}")
    return resp.json()


def _fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def follow_logs(config: JobsConfig, job_id: int, *, follow: bool) -> str:
    """Print a job's output (and keep printing until it ends if FOLLOW); return its state.

    Following uses the API's long poll, so output shows as soon as the master captures it.
    """
    after = 0
    while True:
        params = {"after": after, "wait": 10 if follow else 0}
        view = _request(
            config, "GET", f"/api/jobs/{job_id}/logs", admin=True, params=params, timeout=40
        )
        for chunk in view["chunks"]:
            stream = sys.stdout if chunk["stream"] == "stdout" else sys.stderr
            stream.write(chunk["data"])
            stream.flush()
        after = view["next"]
        if view["finished"] or not follow:
            if view["finished"] and view["chunks"]:
                continue  # drain: the last chunks may land right after the state changes
            return str(view["state"])


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
    config = load_config(spec)
    local = Path(file)
    target = str(local.resolve()) if local.is_file() else file
    args = list(ctx.args)
    if args and args[0] == "--":
        args = args[1:]
    body = {"file": target, "args": args, "submitter": _submitter()}
    record = _request(config, "POST", "/api/jobs", admin=True, json=body)
    job_id = int(record["id"])
    if not follow:
        typer.echo(f"job {job_id} {record['state']}: {record['file']}")
        return
    state = follow_logs(config, job_id, follow=True)
    final = _request(config, "GET", f"/api/jobs/{job_id}")
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
    config = load_config(spec)
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    rows = _request(config, "GET", "/api/jobs", params=params)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "state", "file", "args", "submitter", "submitted", "duration", "exit")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["state"],
            Path(r["file"]).name,
            " ".join(r["args"]),
            r["submitter"],
            _fmt_time(r["submitted"]),
            _fmt_duration(r["duration_s"]),
            "-" if r["exit_status"] is None else str(r["exit_status"]),
        )
    Console().print(table)


@app.command()
def logs(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="Job id.")],
    spec: SpecOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
) -> None:
    """Print a job's captured stdout and stderr."""
    follow_logs(load_config(spec), job_id, follow=follow)


@app.command()
def cancel(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="Job id.")],
    spec: SpecOpt = None,
) -> None:
    """Cancel a queued or running job."""
    config = load_config(spec)
    record = _request(config, "POST", f"/api/jobs/{job_id}/cancel", admin=True)
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
    from bramble.jobs.exec import NodeResult, format_results, worst_status

    args = list(ctx.args)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise BrambleError("nothing to run: bramble exec [--nodes SEL] -- CMD...")
    command = args[0] if len(args) == 1 else " ".join(args)
    config = load_config(spec)
    body = {"command": command, "nodes": nodes, "timeout": timeout, "submitter": _submitter()}
    resp = _request(config, "POST", "/api/exec", admin=True, json=body, timeout=timeout + 30)
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
    from bramble.jobs.hosts import FORMATS, live_nodes, render
    from bramble.spec import load_spec

    if fmt not in FORMATS:
        raise BrambleError(f"unknown --format {fmt!r} (one of: {', '.join(FORMATS)})")
    config = load_config(spec)
    loaded = load_spec(config.spec_path) if config.spec_path else None
    domain = loaded.network.domain if loaded else "cluster"
    live = [] if fmt == "dask" else live_nodes(config.master_url)
    out = render(fmt, live, domain=domain, scheduler=config.scheduler)
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
    from bramble.jobs.hosts import live_nodes
    from bramble.jobs.mpirun import run_mpirun

    args = list(ctx.args)
    if args and args[0] == "--":
        args = args[1:]
    config = load_config(spec)
    subnet = None
    if config.spec_path is not None:
        from bramble.spec import load_spec

        subnet = str(load_spec(config.spec_path).network.subnet)
    hosts = live_nodes(config.master_url)
    raise typer.Exit(
        run_mpirun(hosts, args, n=n, launcher=launcher, netns=netns, subnet=subnet, by_node=by_node)
    )


@app.command()
def scheduler(
    spec: SpecOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: spec).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: spec).")] = None,
) -> None:
    """Run the Dask scheduler with the cluster's TLS (on the master)."""
    from bramble.jobs.servers import run_scheduler

    run_scheduler(load_config(spec), host=host, port=port)


@app.command()
def worker(
    spec: SpecOpt = None,
    name: Annotated[str | None, typer.Option(help="Node name (default: hostname).")] = None,
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    nthreads: Annotated[int | None, typer.Option(help="Threads (default: cores).")] = None,
    memory_limit: Annotated[
        int | None, typer.Option(help="Bytes (default: the node's RAM).")
    ] = None,
) -> None:
    """Run this node's Dask worker with the cluster's TLS."""
    from bramble.jobs.servers import run_worker

    run_worker(
        load_config(spec), name=name, host=host, nthreads=nthreads, memory_limit=memory_limit
    )
