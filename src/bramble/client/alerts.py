"""`bramble alerts`: the alerts and silences of a running master, as tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bramble.client.status import SEVERITY_STYLE, age

if TYPE_CHECKING:
    from rich.table import Table

STATE_STYLE = {"firing": "red", "pending": "yellow", "resolved": "green"}


def alerts_table(alerts: list[dict[str, Any]], now: float) -> Table:
    """One row per alert: state, severity, rule, node, condition, value, since when."""
    from rich.table import Table

    table = Table(title="alerts")
    for header in ("state", "severity", "rule", "node", "condition", "value", "since"):
        table.add_column(header, no_wrap=True)
    for a in alerts:
        state = a["state"] + (" (silenced)" if a.get("silenced") else "")
        since = a.get("resolved_at") or a.get("fired_at") or a["active_at"]
        table.add_row(
            f"[{STATE_STYLE.get(a['state'], '')}]{state}[/]",
            f"[{SEVERITY_STYLE.get(a['severity'], '')}]{a['severity']}[/]",
            a["rule"],
            a["node"],
            a["condition"],
            "-" if a.get("value") is None else f"{a['value']:g}",
            age(max(0.0, now - since)),
        )
    return table


def silences_table(silences: list[dict[str, Any]], now: float) -> Table:
    """One row per silence: id, rule, node, until when, comment."""
    from rich.table import Table

    table = Table(title="silences")
    for header in ("id", "rule", "node", "ends", "comment"):
        table.add_column(header, no_wrap=True)
    for s in silences:
        left = s["ends_at"] - now
        ends = f"in {age(left)}" if s["active"] else f"ended {age(max(0.0, -left))} ago"
        table.add_row(s["id"], s["rule"], s["node"], ends, s["comment"])
    return table
