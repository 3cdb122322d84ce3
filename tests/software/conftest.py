"""Fixtures for serving software: bramble's wheel built once, small real wheels, venvs."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bramble.software.own import Wheel, build, source_tree


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bramble's wheel, built from this source tree with `pip wheel` (once per session)."""
    tree = source_tree()
    if tree is None:
        pytest.skip("bramble does not run from a source tree here")
    wheel = build(tree)
    path = tmp_path_factory.mktemp("wheel") / wheel.filename
    path.write_bytes(wheel.data)
    return path


def _hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def tiny_wheel(directory: Path, name: str = "hello_dep", version: str = "1.0") -> Path:
    """A real, minimal pure-Python wheel (one module), as a dependency stands in for."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": b"GREETING = 'hello from the master'\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{k},sha256={_hash(v)},{len(v)}\n" for k, v in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for arcname, data in files.items():
            archive.writestr(arcname, data)
    return path


def make_venv(path: Path, *, system_site_packages: bool = False) -> Path:
    """A venv without pip of its own (pip is run with --python); its interpreter."""
    base = getattr(sys, "_base_executable", sys.executable)
    argv = [base, "-m", "venv", "--without-pip", str(path)]
    if system_site_packages:
        argv.insert(4, "--system-site-packages")
    subprocess.run(argv, check=True)
    return path / "bin" / "python"


def pip(python: Path, *args: str, isolated: bool = True) -> subprocess.CompletedProcess[str]:
    """This pip, installing into the environment of PYTHON (no pip config when ISOLATED)."""
    env = {k: v for k, v in os.environ.items() if not (isolated and k.startswith("PIP_"))}
    if isolated:
        env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def read_wheel(path_or_wheel: Path | Wheel) -> dict[str, bytes]:
    data = path_or_wheel.data if isinstance(path_or_wheel, Wheel) else path_or_wheel.read_bytes()
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist()}
