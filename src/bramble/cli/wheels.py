"""`bramble wheels ...`: the wheels the master serves its nodes at /dist/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bramble.cli.options import SpecOpt
from bramble.errors import BrambleError

app = typer.Typer(help="The wheels the master serves its nodes at /dist/.", no_args_is_help=True)


def _glibc(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise BrambleError(f"--glibc {text!r}: give it as 2.36")
    return int(major), int(minor)


@app.command("fetch")
def fetch_command(
    platform: Annotated[
        list[str],
        typer.Option(
            "--platform",
            help="The nodes' platform (uname -m): aarch64 (Raspberry Pi OS 64-bit), "
            "armv7l (Raspberry Pi OS 32-bit), x86_64. Repeat for several.",
        ),
    ],
    spec: SpecOpt = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to put them (default: software.wheels_dir)."),
    ] = None,
    python_version: Annotated[
        str | None,
        typer.Option(help="The nodes' Python, e.g. 3.11 (default: the master's)."),
    ] = None,
    glibc: Annotated[
        str, typer.Option(help="The nodes' glibc (Debian 12, Raspberry Pi OS: 2.36).")
    ] = "2.36",
    extra_index_url: Annotated[
        list[str] | None,
        typer.Option(help="Another index for wheels yours lacks (repeatable)."),
    ] = None,
) -> None:
    """Download bramble's dependencies for the nodes' platform into the wheels directory."""
    from bramble.software.fetch import fetch

    if directory is None:
        from bramble.cli.options import load

        directory = Path(load(spec).spec.software.wheels_dir)
    fetch(
        directory,
        platform,
        python_version=python_version,
        glibc=_glibc(glibc),
        extra_index_urls=extra_index_url or [],
        say=typer.echo,
    )
