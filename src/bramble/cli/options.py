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
        help="Spec file (default: $BRAMBLE_SPEC, ./bramble.toml, /etc/bramble/bramble.toml).",
        show_default=False,
    ),
]


def load(spec: Path | None, *, env: bool = True) -> Cluster:
    """The cluster of the --spec option (or the usual search), loaded once for the command.

    $BRAMBLE_SPEC is looked at before the search (the lab sets it), for every command.
    """
    from bramble.cluster import find_cluster

    return find_cluster(spec, env=env)


def master_url(spec: Path | None, url: str | None) -> str:
    """The master's base URL: --url if given (no spec needed), else the spec's dashboard."""
    if url:
        return url.rstrip("/")
    return load(spec).master_url
