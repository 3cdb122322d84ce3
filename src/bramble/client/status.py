"""`bramble status`: the node table of a running master, with its firing alerts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Group

STATUS_STYLE = {"up": "green", "stale": "yellow", "down": "red"}
SEVERITY_STYLE = {"critical": "red", "warning": "yellow", "info": "blue"}


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


def firing_by_node(alerts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The firing ALERTS (as /api/alerts gives them) of each node."""
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        if alert.get("state") == "firing":
            out.setdefault(alert["node"], []).append(alert)
    return out


def size(count: float) -> str:
    """Bytes in a short human unit: '512 B', '3.4 MiB', '2.0 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def history_line(health: dict[str, Any], now: float) -> str:
    """What history holds of its bound, and when it was last written ('' from a master that
    does not say)."""
    bound = health.get("history_max_bytes")
    if bound is None:
        return ""
    held = health.get("history_bytes")
    line = (
        f"history: {size(held)} of {size(bound)}"
        if held is not None
        else f"history: up to {size(bound)}"
    )
    flushed, every = health.get("history_flushed"), health.get("history_flush_seconds")
    line += (
        f", saved {age(max(0.0, now - flushed))} ago" if flushed is not None else ", not saved yet"
    )
    if every:
        line += f" (every {every:g} s)"
    return line


def status_view(
    nodes: list[dict[str, Any]],
    base: str,
    now: float,
    alerts: list[dict[str, Any]] | None = None,
    health: dict[str, Any] | None = None,
) -> Group:
    """The node table of the master at BASE with each node's firing ALERTS, the count of nodes
    per status, a line per firing alert, and what its history holds (from its HEALTH)."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title=f"bramble at {base}")
    firing = firing_by_node(alerts or [])
    for header in ("node", "status", "cpu", "temp", "memory", "load", "last seen", "alerts"):
        table.add_column(header, no_wrap=True)
    for node in nodes:
        cells = node_row(node, now)
        style = STATUS_STYLE.get(node["status"], "")
        cells[1] = f"[{style}]{cells[1]}[/{style}]"
        cells.append(
            " ".join(
                f"[{SEVERITY_STYLE.get(a['severity'], '')}]{a['rule']}[/]"
                for a in firing.get(node["name"], [])
            )
            or "-"
        )
        table.add_row(*cells)
    counts = {s: sum(1 for n in nodes if n["status"] == s) for s in STATUS_STYLE}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    unsigned = [n["name"] for n in nodes if not n.get("signed", True)]
    if unsigned:
        summary += f"; * unsigned (legacy, anyone could send them): {', '.join(unsigned)}"
    lines = [
        f"[{SEVERITY_STYLE.get(a['severity'], '')}]{a['severity']}[/] {a['rule']} on "
        f"{a['node']}: {a['condition']} (since {age(max(0.0, now - (a['fired_at'] or now)))})"
        for node_alerts in firing.values()
        for a in node_alerts
    ]
    count = len(lines)
    summary += f"; {count} alert{'s' if count != 1 else ''} firing" if count else "; no alerts"
    history = history_line(health or {}, now)
    return Group(table, summary, *lines, *([history] if history else []))
