"""`bramble wheels fetch`: fill the master's wheels directory for the nodes' platform.

It wraps `pip download --only-binary=:all: --platform ... --python-version ...` with the
requirements of the bramble the master runs, so the nodes (which install with `--no-index`
from the master) find every dependency there, built for their architecture. pip runs as
configured on the master (its index, proxy and cache); the nodes need no index at all.
"""

from __future__ import annotations

import logging
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bramble.errors import BrambleError

log = logging.getLogger(__name__)

Say = Callable[[str], None]
DEFAULT_GLIBC = (2, 36)  # Debian 12 and Raspberry Pi OS (Bookworm)


@dataclass(frozen=True, slots=True)
class Platform:
    """A node platform: its `uname -m`, and the boards it is."""

    arch: str
    boards: str
    oldest_manylinux: int  # the oldest manylinux_2_N with wheels for this architecture


PLATFORMS = {
    "aarch64": Platform("aarch64", "Raspberry Pi OS 64-bit, other 64-bit ARM boards", 17),
    "armv7l": Platform("armv7l", "Raspberry Pi OS 32-bit", 17),
    "x86_64": Platform("x86_64", "PCs and virtual machines", 5),
}
ALIASES = {"arm64": "aarch64", "armhf": "armv7l", "amd64": "x86_64"}
_LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def find_platform(name: str) -> Platform:
    """The platform called NAME (or an alias such as arm64, armhf, amd64)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in PLATFORMS:
        known = ", ".join(f"{p.arch} ({p.boards})" for p in PLATFORMS.values())
        raise BrambleError(f"unknown platform {name!r}: use one of {known}")
    return PLATFORMS[key]


def platform_tags(target: Platform, glibc: tuple[int, int] = DEFAULT_GLIBC) -> list[str]:
    """pip's --platform values for TARGET with at most GLIBC: every manylinux tag it runs.

    pip compares a wheel's platform tag with these literally, so each glibc level is listed,
    with its legacy alias (manylinux2014 = manylinux_2_17, ...).
    """
    major, minor = glibc
    if major != 2 or minor < target.oldest_manylinux:
        raise BrambleError(f"glibc {major}.{minor} is older than any manylinux wheel")
    tags = []
    for level in range(minor, target.oldest_manylinux - 1, -1):
        tags.append(f"manylinux_2_{level}_{target.arch}")
        if level in _LEGACY:
            tags.append(f"{_LEGACY[level]}_{target.arch}")
    return [*tags, f"linux_{target.arch}"]


def requirements(dist: metadata.Distribution) -> list[str]:
    """What DIST needs at run time (its Requires-Dist, without the extras')."""
    return [r for r in (dist.requires or []) if not re.search(r"\bextra\s*==", r)]


def download_argv(
    target: Platform,
    python_version: str,
    dest: Path,
    reqs: Sequence[str],
    *,
    glibc: tuple[int, int] = DEFAULT_GLIBC,
    extra_index_urls: Sequence[str] = (),
    no_deps: bool = False,
) -> list[str]:
    """The `pip download` command fetching REQS for TARGET into DEST."""
    argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(dest)]
    argv += ["--python-version", python_version, "--implementation", "cp"]
    argv += ["--progress-bar", "off", "--disable-pip-version-check"]
    for tag in platform_tags(target, glibc):
        argv += ["--platform", tag]
    for url in extra_index_urls:
        argv += ["--extra-index-url", url]
    if no_deps:
        argv.append("--no-deps")
    return [*argv, *reqs]


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit {proc.returncode}"


def fetch(
    dest: Path,
    platforms: Sequence[str],
    *,
    python_version: str | None = None,
    glibc: tuple[int, int] = DEFAULT_GLIBC,
    extra_index_urls: Sequence[str] = (),
    say: Say = print,
) -> list[Path]:
    """Download bramble's dependencies for each of PLATFORMS into DEST; the wheels there.

    Where a platform is not this machine's, bramble itself is fetched too if the index has
    this version for it (the master's own wheel is served as well, and suits nodes like it).
    """
    from bramble.software.own import own_distribution

    dist = own_distribution()
    if dist is None:
        raise BrambleError("bramble's installed metadata is missing: reinstall bramble with pip")
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    targets = [find_platform(p) for p in platforms]
    dest.mkdir(parents=True, exist_ok=True)
    reqs = requirements(dist)
    here = platform.machine()
    for target in targets:
        say(f"{target.arch} ({target.boards}), Python {version}: {len(reqs)} requirements")
        argv = download_argv(
            target, version, dest, reqs, glibc=glibc, extra_index_urls=extra_index_urls
        )
        log.debug("running %s", " ".join(argv))
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrambleError(
                f"pip download for {target.arch} failed: {_last_line(proc)} (a dependency may "
                "have no wheel for that platform on your index: add one with --extra-index-url)"
            )
        if target.arch != here:
            own = f"{dist.metadata['Name']}=={dist.version}"
            argv = download_argv(
                target,
                version,
                dest,
                [own],
                glibc=glibc,
                extra_index_urls=extra_index_urls,
                no_deps=True,
            )
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                say(
                    f"  note: {own} for {target.arch} is not on the index; its nodes install "
                    "the master's own wheel, which suits them only if it is pure Python"
                )
    wheels = sorted(dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    say(f"{dest}: {len(wheels)} wheels, {size / 1e6:.1f} MB, served at /dist/ by the master")
    return wheels
