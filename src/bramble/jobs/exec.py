"""`bramble exec`: one shell command on every selected node at once, through the Dask workers.

The master asks each selected node's worker (one per node, named after the node) to run the
command with `Client.run`; the worker runs it as an asyncio subprocess, so its event loop
keeps serving heartbeats and tasks meanwhile, and no SSH is needed. Results come back per
node with exit codes; identical outputs are folded in the display, as `clush -b` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import re
import signal
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from bramble.errors import BrambleError

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

MAX_EXEC_OUTPUT = 1024 * 1024
_RANGE = re.compile(r"\[([0-9,\-]+)\]")


class ExecError(BrambleError):
    """An exec could not run (bad selection, no workers)."""


class NodeResult(BaseModel):
    """What one node returned: exit status (None when it never finished) and merged output."""

    model_config = ConfigDict(frozen=True)

    node: str
    rc: int | None
    output: str
    timed_out: bool = False
    error: str | None = None


class ExecRequest(BaseModel):
    """An exec as the API receives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str
    nodes: str | None = None
    timeout: float = 60.0
    submitter: str = Field(
        default="",
        description="Ignored: the exec is logged as run by whoever authenticated.",
        max_length=256,
    )


class ExecResponse(BaseModel):
    """An exec's results, one per selected node, as the API returns them."""

    model_config = ConfigDict(frozen=True)

    id: int
    command: str
    duration: float
    results: list[NodeResult]


def expand_selection(selection: str) -> list[str]:
    """Expand a node selection into patterns: ``node-[1-3,7],gpu*`` -> node-1..3, node-7, gpu*.

    Commas inside brackets are range lists; commas outside separate patterns; the patterns are
    shell globs (`fnmatch`).
    """
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in selection:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    out: list[str] = []
    for part in (p.strip() for p in parts):
        if part:
            out.extend(_expand_ranges(part))
    return out


def _expand_ranges(pattern: str) -> list[str]:
    match = _RANGE.search(pattern)
    if match is None:
        return [pattern]
    values: list[str] = []
    for item in match.group(1).split(","):
        if "-" in item:
            lo, _, hi = item.partition("-")
            if not lo.isdigit() or not hi.isdigit():
                return [pattern]
            width = len(lo) if lo.startswith("0") else 0
            values.extend(str(n).zfill(width) for n in range(int(lo), int(hi) + 1))
        elif item.isdigit():
            values.append(item)
        else:
            return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [x for v in values for x in _expand_ranges(head + v + tail)]


def select(names: list[str], selection: str | None) -> list[str]:
    """The NAMES matched by SELECTION (all when None), sorted; ExecError if nothing matches."""
    if not selection:
        chosen = sorted(names)
    else:
        patterns = expand_selection(selection)
        chosen = sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))
    if not chosen:
        raise ExecError(
            f"no live worker matches {selection!r} (workers: {', '.join(sorted(names)) or 'none'})"
        )
    return chosen


async def run_shell(command: str, timeout: float) -> dict[str, Any]:
    """Run COMMAND under /bin/sh on this worker; stdout and stderr merged (runs on the worker)."""
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        timed_out = True
        # Kill the whole session: the shell's children hold the pipe open too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = await proc.communicate()
    text = out[:MAX_EXEC_OUTPUT].decode("utf-8", errors="replace")
    return {"rc": proc.returncode, "output": text, "timed_out": timed_out}


def worker_names(client: Client) -> dict[str, str]:
    """Live workers as {node name: worker address}."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    return {str(w.get("name") or addr): addr for addr, w in info.items()}


def run_exec(
    client: Client, command: str, selection: str | None, timeout: float
) -> list[NodeResult]:
    """Run COMMAND on the selected nodes' workers in parallel; one result per node."""
    by_name = worker_names(client)
    chosen = select(list(by_name), selection)
    addrs = [by_name[n] for n in chosen]
    start = time.monotonic()
    raw = client.run(run_shell, command, timeout, workers=addrs, on_error="return")
    log.info("exec on %d nodes took %.2f s", len(addrs), time.monotonic() - start)
    results: list[NodeResult] = []
    for name, addr in zip(chosen, addrs, strict=True):
        value = raw.get(addr)
        if isinstance(value, dict):
            results.append(NodeResult(node=name, **value))
        else:
            results.append(NodeResult(node=name, rc=None, output="", error=str(value)))
    return results


def fold(results: list[NodeResult]) -> list[tuple[list[str], NodeResult]]:
    """Group nodes whose exit status and output are identical, in node order."""
    groups: dict[tuple[int | None, str, bool, str | None], list[NodeResult]] = {}
    for r in results:
        groups.setdefault((r.rc, r.output, r.timed_out, r.error), []).append(r)
    return [([r.node for r in members], members[0]) for members in groups.values()]


def format_results(results: list[NodeResult]) -> str:
    """clush -b style text: one block per group of identical results."""
    lines: list[str] = []
    for nodes, r in fold(results):
        if r.error:
            status = f"error: {r.error}"
        elif r.timed_out:
            status = "timed out"
        else:
            status = f"exit {r.rc}"
        head = f"{','.join(nodes)} ({len(nodes)}) {status}"
        lines.append("-" * min(len(head), 72))
        lines.append(head)
        lines.append("-" * min(len(head), 72))
        if r.output:
            lines.append(r.output.rstrip("\n"))
    return "\n".join(lines) + "\n"


def worst_status(results: list[NodeResult]) -> int:
    """The exit status for the CLI: 0 if every node exited 0, else the largest (255 if lost)."""
    codes = [255 if (r.rc is None or r.timed_out or r.error) else r.rc for r in results]
    return max(codes, default=0)
