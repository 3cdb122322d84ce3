"""Options every command shares, and loading the cluster they name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bramble.cluster import Cluster

SpecOpt = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        help="Spec file (default: ./bramble.toml, then /etc/bramble/bramble.toml).",
        show_default=False,
    ),
]


def load(spec: Path | None, *, env: bool = False) -> Cluster:
    """The cluster of the --spec option (or the usual search), loaded once for the command.

    With ENV, $BRAMBLE_SPEC is looked at before the search (the jobs commands; the lab sets it).
    """
    from bramble.cluster import find_cluster

    return find_cluster(spec, env=env)


def master_url(spec: Path | None, url: str | None) -> str:
    """The master's base URL: --url if given (no spec needed), else the spec's dashboard."""
    if url:
        return url.rstrip("/")
    return load(spec).master_url
