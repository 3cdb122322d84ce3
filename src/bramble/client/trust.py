"""The trust commands' calls to the master: waiting requests, approve, revoke, retire the
shared key, mark nodes due to rotate their keys. Each needs the admin token."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from bramble.errors import BrambleError

if TYPE_CHECKING:
    from rich.table import Table

    from bramble.client.http import MasterClient
    from bramble.spec import Spec


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def pending_table(master: MasterClient) -> Table:
    """The requests waiting for approval: MAC, the spec's name, address, why, since when."""
    from rich.table import Table

    rows: list[dict[str, Any]] = master.get("/api/trust/pending")
    table = Table(title=f"{len(rows)} waiting for `bramble nodes approve NAME|MAC`")
    for column in ("MAC", "name", "address", "why", "asked"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["mac"], row["name"] or "-", row["address"], row["reason"], _when(row["asked"])
        )
    return table


def enrolled_table(master: MasterClient) -> Table:
    """The enrolled nodes: name, MAC, key id, address, since when, revoked when, whether its
    keys are due for rotation."""
    from rich.table import Table

    rows: list[dict[str, Any]] = master.get("/api/trust/nodes")
    table = Table(title=f"{len(rows)} enrolled")
    for column in ("name", "MAC", "key id", "address", "enrolled", "revoked", "cert", "rotate"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["mac"],
            row["key_id"],
            row["address"],
            _when(row["enrolled"]),
            _when(row["revoked"]),
            "yes" if row["cert"] else "no",
            "due" if row.get("due") else "",
        )
    return table


def mark_rotation(master: MasterClient, names: list[str] | None) -> str:
    """Mark the enrolled nodes NAMES (None: every one) due to rotate their keys now; a line
    saying what happens next."""
    answer: dict[str, list[str]] = master.post("/api/trust/rotate", {"names": names})
    due = answer["due"]
    if not due:
        return "no enrolled node to rotate"
    shown = ", ".join(due[:10]) + (f", ... ({len(due)} in all)" if len(due) > 10 else "")
    return (
        f"keys due for rotation: {shown}. Each node rotates its telemetry key and worker "
        "certificate at its next check (bramble-rotate.timer, within about two hours; on a "
        "node, `bramble enroll --if-due` checks now); `bramble nodes enrolled` shows the new "
        "key ids"
    )


def approve(master: MasterClient, who: str, name: str | None) -> str:
    """Enroll the request waiting from WHO (MAC or name); a line saying what happened."""
    node: dict[str, Any] = master.post("/api/trust/approve", {"who": who, "name": name})
    return f"approved {node['mac']} as {node['name']} (key {node['key_id']})"


def refuse(master: MasterClient, who: str) -> str:
    """Refuse the request waiting from WHO (MAC or name); a line saying what happened."""
    request: dict[str, Any] = master.post("/api/trust/refuse", {"who": who})
    return (
        f"refused {request['mac']} (from {request['address']}): the same key asking again is "
        "refused"
    )


def revoke(master: MasterClient, name: str) -> str:
    """End NAME's credentials now; a line saying what happened."""
    node: dict[str, Any] = master.post("/api/trust/revoke", {"name": name})
    return (
        f"revoked {node['name']} ({node['mac']}): its heartbeats are refused from now on and "
        "it waits for approval if it asks again"
    )


def retire_shared_key(master: MasterClient, spec: Spec, *, force: bool) -> str:
    """Stop the master accepting the shared telemetry key, once every node of SPEC has its
    own (FORCE: even if some have not enrolled; they go unheard until they do)."""
    rows: list[dict[str, Any]] = master.get("/api/trust/nodes")
    enrolled = {r["name"] for r in rows if r["revoked"] is None}
    missing = [n.name for n in spec.nodes if n.name not in enrolled]
    if missing and not force:
        raise BrambleError(
            f"{len(missing)} nodes of the spec have not enrolled ({', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): their heartbeats still use the shared "
            "key; enroll them first, or pass --force"
        )
    master.post("/api/trust/retire-shared-key")
    return (
        "the shared telemetry key is retired: only enrolled nodes' own keys verify from now on "
        "(remove [telemetry] key from the nodes' secrets files)"
    )
