"""`bramble status`: the node table of a running master."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Group

STATUS_STYLE = {"up": "green", "stale": "yellow", "down": "red"}


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
    """Table cells for one node: name (with a * if it does not sign its datagrams), status,
    CPU, temperature, memory, load, last seen."""
    sample = node.get("sample") or {}
    metrics = node.get("metrics") or {}
    total, used = metrics.get("mem_total", 0), metrics.get("mem_used", 0)
    load = sample.get("loadavg") or [0, 0, 0]
    return [
        node["name"] + ("" if node.get("signed", True) else "*"),
        node["status"],
        f"{sample.get('cpuusage', 0) * 100:5.1f}%",
        f"{sample.get('cputemp', 0):.1f} °C" if sample.get("cputemp") else "-",
        f"{used / 1024:.0f}/{total / 1024:.0f} MiB" if total else "-",
        f"{load[0]:.2f}",
        age(max(0.0, now - node["last_seen"])),
    ]


def status_view(nodes: list[dict[str, Any]], base: str, now: float) -> Group:
    """The node table of the master at BASE, and the count of nodes per status."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title=f"bramble at {base}")
    for header in ("node", "status", "cpu", "temp", "memory", "load", "last seen"):
        table.add_column(header, no_wrap=True)
    for node in nodes:
        cells = node_row(node, now)
        style = STATUS_STYLE.get(node["status"], "")
        cells[1] = f"[{style}]{cells[1]}[/{style}]"
        table.add_row(*cells)
    counts = {s: sum(1 for n in nodes if n["status"] == s) for s in STATUS_STYLE}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    unsigned = [n["name"] for n in nodes if not n.get("signed", True)]
    if unsigned:
        summary += f"; * unsigned (legacy, anyone could send them): {', '.join(unsigned)}"
    return Group(table, summary)
