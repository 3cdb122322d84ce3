"""`bramble wheels fetch`: platforms, their pip tags, and the command line it runs.

The download itself runs in the lab test (tests/lab/test_lab_install.py), from the index.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bramble.errors import BrambleError
from bramble.software.fetch import (
    PLATFORMS,
    download_argv,
    find_platform,
    platform_tags,
    requirements,
)
from bramble.software.own import own_distribution


def test_platforms_and_aliases() -> None:
    assert find_platform("aarch64") is find_platform("arm64") is PLATFORMS["aarch64"]
    assert find_platform("armhf") is PLATFORMS["armv7l"]
    assert find_platform("AMD64") is PLATFORMS["x86_64"]
    with pytest.raises(BrambleError, match=r"unknown platform 'riscv64': use one of aarch64"):
        find_platform("riscv64")


def test_tags_cover_every_manylinux_up_to_the_nodes_glibc() -> None:
    tags = platform_tags(PLATFORMS["aarch64"])
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_37_aarch64" not in tags
    assert {"manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"} <= set(
        tags
    )
    assert tags[-1] == "linux_aarch64"  # piwheels names its wheels so
    x86 = platform_tags(PLATFORMS["x86_64"], (2, 31))
    assert x86[0] == "manylinux_2_31_x86_64"
    assert {"manylinux1_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64"} <= set(x86)
    with pytest.raises(BrambleError, match="older than any manylinux"):
        platform_tags(PLATFORMS["armv7l"], (2, 12))


def test_download_argv_pins_platform_python_and_binaries(tmp_path: Path) -> None:
    argv = download_argv(PLATFORMS["armv7l"], "3.11", tmp_path, ["httptools>=0.6"])
    assert argv[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--only-binary=:all:" in argv and argv[-1] == "httptools>=0.6"
    assert argv[argv.index("--python-version") + 1] == "3.11"
    assert argv[argv.index("--dest") + 1] == str(tmp_path)
    platforms = [argv[i + 1] for i, a in enumerate(argv) if a == "--platform"]
    assert platforms == platform_tags(PLATFORMS["armv7l"])


def test_requirements_are_the_installed_ones_without_extras() -> None:
    dist = own_distribution()
    assert dist is not None
    reqs = requirements(dist)
    names = {r.split(">")[0].split(";")[0].split("=")[0].strip().lower() for r in reqs}
    assert {"pydantic", "fastapi", "distributed"} <= names
    assert "pytest" not in names and "bokeh" not in names


def test_cli_unknown_platform_is_one_line_exit_2(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bramble", "wheels", "fetch", "--platform", "sparc"]
    out = subprocess.run(
        [*argv, "--dir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert (
        out.stderr.startswith("error: unknown platform 'sparc'") and "Traceback" not in out.stderr
    )
    assert len(out.stderr.strip().splitlines()) == 1
