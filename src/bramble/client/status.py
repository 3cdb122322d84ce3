"""`bramble status`: the node table of a running master, and what the clients share."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from bramble.errors import MasterUnreachableError

STATUS_STYLE = {"up": "green", "stale": "yellow", "down": "red"}


def master_url(spec_path: Path | None, url: str | None) -> str:
    """The master's base URL: URL if given, else the spec's dashboard address."""
    if url:
        return url.rstrip("/")
    from bramble.spec import find_spec_path, load_spec

    spec = load_spec(find_spec_path(spec_path))
    return f"http://{spec.dashboard_bind}:{spec.dashboard.port}"


def get_json(base: str, path: str, timeout: float = 5.0) -> Any:
    """GET BASE+PATH as JSON, or MasterUnreachableError saying why."""
    try:
        response = httpx.get(base + path, timeout=timeout)
        response.raise_for_status()
        return response.json()
    except httpx.HTTPStatusError as exc:
        raise MasterUnreachableError(
            f"{base}{path}: HTTP {exc.response.status_code}: {exc.response.text[:200]}"
        ) from None
    except httpx.HTTPError as exc:
        raise MasterUnreachableError(
            f"no master answering at {base} ({exc}); start one with `bramble master`, or pass --url"
        ) from None


def age(seconds: float) -> str:
    """A short human age: '3 s', '4 min', '2 h', '5 d'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def node_row(node: dict[str, Any], now: float) -> list[str]:
    """Table cells for one node: name, status, CPU, temperature, memory, load, last seen."""
    sample = node.get("sample") or {}
    mem = sample.get("meminfo") or {}
    total = mem.get("MemTotal", 0)
    used = total - mem.get("MemAvailable", mem.get("MemFree", 0))
    load = sample.get("loadavg") or [0, 0, 0]
    return [
        node["name"],
        node["status"],
        f"{sample.get('cpuusage', 0) * 100:5.1f}%",
        f"{sample.get('cputemp', 0):.1f} °C" if sample.get("cputemp") else "-",
        f"{used / 1024:.0f}/{total / 1024:.0f} MiB" if total else "-",
        f"{load[0]:.2f}",
        age(max(0.0, now - node["last_seen"])),
    ]


def print_status(spec_path: Path | None, *, url: str | None, as_json: bool) -> None:
    """Print the node table of a running master."""
    from rich.console import Console
    from rich.table import Table

    base = master_url(spec_path, url)
    nodes = get_json(base, "/api/nodes")
    if as_json:
        print(json.dumps(nodes, indent=2))
        return
    now = time.time()
    table = Table(title=f"bramble at {base}")
    for header in ("node", "status", "cpu", "temp", "memory", "load", "last seen"):
        table.add_column(header)
    for node in nodes:
        cells = node_row(node, now)
        style = STATUS_STYLE.get(node["status"], "")
        cells[1] = f"[{style}]{cells[1]}[/{style}]"
        table.add_row(*cells)
    console = Console()
    console.print(table)
    counts = {s: sum(1 for n in nodes if n["status"] == s) for s in STATUS_STYLE}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))
