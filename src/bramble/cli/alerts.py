"""`bramble alerts list|silence|silences|unsilence`: a running master's alerts, and silencing
them (with the admin token from the spec's secrets file)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from bramble.cli import options
from bramble.cli.options import SpecOpt

if TYPE_CHECKING:
    from pathlib import Path

    from bramble.client.http import MasterClient

app = typer.Typer(help="Alerts of the running master, and silences.", no_args_is_help=True)
UrlOpt = Annotated[str | None, typer.Option(help="Master URL (default: from the spec).")]


def _master(spec: Path | None, url: str | None, *, admin: bool = False) -> MasterClient:
    from bramble.client.http import MasterClient

    if admin:
        cluster = options.load(spec)
        base = url or cluster.master_url
        return MasterClient(base, token=cluster.secrets().admin_token, hint=", or pass --url")
    return MasterClient(options.master_url(spec, url), hint=", or pass --url")


@app.command("list")
def alerts_list(spec: SpecOpt = None, url: UrlOpt = None) -> None:
    """Alerts firing, pending and resolved lately."""
    from rich.console import Console

    from bramble.client.alerts import alerts_table

    with _master(spec, url) as master:
        alerts = master.get("/api/alerts", timeout=5)
    Console().print(alerts_table(alerts, time.time()) if alerts else "no alerts")


@app.command("silence")
def silence(
    duration: Annotated[str, typer.Option("--for", help="How long: '2h', '30m', '1d'.")],
    rule: Annotated[str, typer.Option(help="Rule name or pattern.")] = "*",
    node: Annotated[str, typer.Option(help="Node name or pattern.")] = "*",
    comment: Annotated[str, typer.Option(help="Why (shown with the silence).")] = "",
    spec: SpecOpt = None,
    url: UrlOpt = None,
) -> None:
    """Stop notifications of the alerts of RULE on NODE for a while."""
    body = {"rule": rule, "node": node, "duration": duration, "comment": comment}
    with _master(spec, url, admin=True) as master:
        made = master.post("/api/silences", body, timeout=5)
    typer.echo(f"silence {made['id']}: {made['rule']} on {made['node']} for {duration}")


@app.command("silences")
def silences(spec: SpecOpt = None, url: UrlOpt = None) -> None:
    """Silences, active ones first."""
    from rich.console import Console

    from bramble.client.alerts import silences_table

    with _master(spec, url) as master:
        found = master.get("/api/silences", timeout=5)
    Console().print(silences_table(found, time.time()) if found else "no silences")


@app.command("unsilence")
def unsilence(silence_id: str, spec: SpecOpt = None, url: UrlOpt = None) -> None:
    """End a silence now."""
    with _master(spec, url, admin=True) as master:
        master.request("DELETE", f"/api/silences/{silence_id}", timeout=5)
    typer.echo(f"silence {silence_id} ended")
