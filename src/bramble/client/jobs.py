"""The jobs commands' calls to the master: submit, list, logs, cancel, exec, live membership.

The master runs job drivers and execs, so a workstation needs only the master's URL and, to
change anything or read a job's output, the admin token: no Dask certificate. The master
records who submitted (the token's holder, from their address).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bramble.jobs.hosts import Host, hosts_from_nodes

if TYPE_CHECKING:
    from rich.table import Table

    from bramble.client.http import MasterClient


def submit(master: MasterClient, file: str, args: list[str]) -> dict[str, Any]:
    """Submit the job FILE (a local file is sent by its absolute path) with ARGS."""
    local = Path(file)
    target = str(local.resolve()) if local.is_file() else file
    body = {"file": target, "args": args}
    record: dict[str, Any] = master.post("/api/jobs", body)
    return record


def follow_logs(
    master: MasterClient,
    job_id: int,
    *,
    follow: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> str:
    """Write a job's output to OUT and ERR (and keep writing until it ends if FOLLOW); its state.

    Following uses the API's long poll, so output shows as soon as the master captures it.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    after = 0
    while True:
        view = master.get(
            f"/api/jobs/{job_id}/logs", after=after, wait=10 if follow else 0, timeout=40
        )
        for chunk in view["chunks"]:
            stream = out if chunk["stream"] == "stdout" else err
            stream.write(chunk["data"])
            stream.flush()
        after = view["next"]
        if view["finished"] or not follow:
            if view["finished"] and view["chunks"]:
                continue  # drain: the last chunks may land right after the state changes
            return str(view["state"])


def exec_on_nodes(
    master: MasterClient, command: str, nodes: str | None, timeout: float
) -> dict[str, Any]:
    """Run the shell COMMAND on the selected NODES through the master; its ExecResponse."""
    body = {"command": command, "nodes": nodes, "timeout": timeout}
    response: dict[str, Any] = master.post("/api/exec", body, timeout=timeout + 30)
    return response


def live_nodes(master: MasterClient) -> list[Host]:
    """The nodes that are up on the master, with their core counts."""
    return hosts_from_nodes(master.get("/api/nodes", timeout=5))


def _time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def jobs_table(rows: list[dict[str, Any]]) -> Table:
    """The job list as a table: id, state, file, args, submitter, submitted, duration, exit."""
    from rich.table import Table

    table = Table("id", "state", "file", "args", "submitter", "submitted", "duration", "exit")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["state"],
            Path(r["file"]).name,
            " ".join(r["args"]),
            r["submitter"],
            _time(r["submitted"]),
            _duration(r["duration_s"]),
            "-" if r["exit_status"] is None else str(r["exit_status"]),
        )
    return table
