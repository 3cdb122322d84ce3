"""Options every command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SpecOpt = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        help="Spec file (default: ./bramble.toml, then /etc/bramble/bramble.toml).",
        show_default=False,
    ),
]
