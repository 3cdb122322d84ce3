"""`bramble alerts list` and `silences`: the tables they print."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from bramble.client.alerts import alerts_table, silences_table


def printed(table: object) -> str:
    console = Console(file=StringIO(), width=140, color_system=None)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def test_alerts_table() -> None:
    alerts = [
        {"rule": "node_down", "node": "n2", "severity": "critical", "state": "firing",
         "condition": "down == 1", "value": 1.0, "active_at": 0, "fired_at": 880,
         "resolved_at": None, "silenced": False},
        {"rule": "disk_full", "node": "n3", "severity": "warning", "state": "firing",
         "condition": "disk_used_percent > 90", "value": 93.5, "active_at": 0, "fired_at": 0,
         "resolved_at": None, "silenced": True},
        {"rule": "hot", "node": "n1", "severity": "warning", "state": "pending",
         "condition": "cputemp > 80", "value": None, "active_at": 990, "fired_at": None,
         "resolved_at": None},
    ]  # fmt: skip
    out = printed(alerts_table(alerts, 1000))
    assert "node_down" in out and "2 min" in out and "firing (silenced)" in out
    assert "93.5" in out and "pending" in out and "10 s" in out


def test_silences_table() -> None:
    silences = [
        {"id": "3f9c2a1b7d04", "rule": "disk_full", "node": "n3", "ends_at": 1000 + 7200,
         "comment": "new card", "active": True},
        {"id": "aa", "rule": "*", "node": "*", "ends_at": 940, "comment": "", "active": False},
    ]  # fmt: skip
    out = printed(silences_table(silences, 1000))
    assert "3f9c2a1b7d04" in out and "in 2 h" in out and "new card" in out
    assert "ended 60 s ago" in out
