"""The master's own wheel: bramble at exactly the version the master runs, for its nodes.

How it is made depends on how bramble was installed:

- from a wheel (`pip install bramble-cluster...`): the wheel is put together again from the
  installed files the distribution's RECORD lists, each checked against its recorded hash, so
  it holds exactly the code the master runs (pip's own additions, the console script and
  bytecode, are left out; pip makes them again on the node). No compiler, no network, no
  build backend: a master of an offline cluster can do it, in well under a second.
- from a source tree (an editable install, or a checkout on the path): `pip wheel --no-deps`
  builds it from a copy of the tree, which is left untouched.

Only the standard library is used, so this works in any environment bramble runs in.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from bramble.errors import BrambleError

log = logging.getLogger(__name__)

NAMES = ("bramble-cluster",)
"""Our distribution's name, and the one it had before (a source tree of that time)."""
_PIP_ADDED = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "RECORD.jws", "RECORD.p7s"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the same bytes on every rebuild
_BUILD_TIMEOUT = 600.0
_SKIP_COPY = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".venv"
)


class OwnWheelError(BrambleError):
    """The master cannot make its own wheel; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Wheel:
    """A wheel file in memory."""

    filename: str
    data: bytes

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the file (pip checks it from the link's fragment)."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def version(self) -> str:
        """The version in the file name."""
        return self.filename.split("-")[1]

    @property
    def requirement(self) -> str:
        """`name==version` pinning exactly this wheel's project and version."""
        return f"{self.filename.split('-')[0].replace('_', '-')}=={self.version}"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _package_dir() -> Path:
    import bramble

    return Path(bramble.__file__).resolve().parent


def own_distribution() -> metadata.Distribution | None:
    """The installed distribution bramble runs from, if any (wheel or editable install)."""
    names = [n for n in metadata.packages_distributions().get("bramble", []) if _normal(n) in NAMES]
    for name in [*names, *NAMES]:
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _editable_source(dist: metadata.Distribution) -> Path | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return None
    url = data.get("url", "")
    if not data.get("dir_info", {}).get("editable") or not url.startswith("file:"):
        return None
    return Path(unquote(urlparse(url).path))


def _runs_installed_files(dist: metadata.Distribution) -> bool:
    """Whether the running bramble package is the one this distribution installed."""
    try:
        installed = Path(str(dist.locate_file("bramble/__init__.py"))).resolve()
    except OSError:
        return False
    return installed.parent == _package_dir() and dist.files is not None


def source_tree() -> Path | None:
    """The source tree the running bramble comes from (editable install or checkout), if any."""
    dist = own_distribution()
    if dist is not None:
        source = _editable_source(dist)
        if source is not None and _package_dir().is_relative_to(source.resolve()):
            return source
    for parent in _package_dir().parents:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file():
            text = pyproject.read_text("utf-8", errors="replace")
            names = re.findall(r'(?m)^name\s*=\s*"([^"]+)"', text)
            return parent if any(_normal(n) in NAMES for n in names) else None
    return None


# --- rebuilding an installed wheel ----------------------------------------------------------


def _tag_string(tags: list[str]) -> str:
    parts: list[list[str]] = [[], [], []]
    for tag in tags:
        for i, part in enumerate(tag.split("-")):
            if part not in parts[i]:
                parts[i].append(part)
    return "-".join(".".join(p) for p in parts)


def _unrewrite_shebang(data: bytes, prefix: Path) -> bytes:
    """A script with the `#!python` pip had replaced by this environment's interpreter."""
    first, sep, rest = data.partition(b"\n")
    if first.startswith(b"#!") and str(prefix).encode() in first and b"python" in first:
        return b"#!python" + sep + rest
    return data


def rebuild(dist: metadata.Distribution) -> Wheel:
    """The wheel DIST was installed from, made again from its RECORD and checked file by file."""
    files = dist.files
    if not files:
        raise OwnWheelError(f"{dist.metadata['Name']} has no RECORD: cannot rebuild its wheel")
    site = Path(str(dist.locate_file(""))).resolve()
    prefix = site.parents[2] if site.parent.parent.name == "lib" else site.parent
    info = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    if info is None:
        raise OwnWheelError(f"{site}: no .dist-info directory in the RECORD of bramble")
    name, version = dist.metadata["Name"], dist.version
    data_dir = f"{re.sub(r'[-_.]+', '_', name)}-{version}.data"
    console = {
        ep.name for ep in dist.entry_points if ep.group in ("console_scripts", "gui_scripts")
    }
    entries: list[tuple[str, bytes, int]] = []
    for file in files:
        parts = file.parts
        if "__pycache__" in parts or file.suffix == ".pyc":
            continue
        if parts[0] == info and len(parts) == 2 and parts[1] in _PIP_ADDED:
            continue
        path = Path(os.path.normpath(site / file))
        if parts[0] == "..":
            if not path.is_relative_to(prefix):
                raise OwnWheelError(f"{path}: installed outside {prefix}; cannot rebuild the wheel")
            rel = path.relative_to(prefix)
            if rel.parts[0] == "bin" and len(rel.parts) == 2:
                if rel.name in console:
                    continue  # pip writes console scripts from entry_points.txt
                arcname = f"{data_dir}/scripts/{rel.name}"
            else:
                arcname = f"{data_dir}/data/{rel.as_posix()}"
        else:
            arcname = file.as_posix()
        try:
            data = path.read_bytes()
            mode = path.stat().st_mode & 0o777
        except OSError as exc:
            raise OwnWheelError(f"cannot read installed file {path}: {exc}") from None
        if file.hash is None or file.hash.mode != "sha256":
            raise OwnWheelError(f"{path}: no sha256 in bramble's RECORD; reinstall bramble")
        if _record_hash(data) != f"sha256={file.hash.value}":
            raise OwnWheelError(
                f"{path} was changed after bramble was installed: reinstall bramble "
                f"({sys.executable} -m pip install --force-reinstall {name}=={version})"
            )
        if arcname.startswith(f"{data_dir}/scripts/"):
            data = _unrewrite_shebang(data, prefix)
        entries.append((arcname, data, mode))
    wheel_meta = dist.read_text("WHEEL") or ""
    tags = [
        line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:")
    ]
    if not tags:
        raise OwnWheelError(f"{site / info / 'WHEEL'}: no Tag lines; cannot name the wheel")
    entries.sort(key=lambda e: (e[0].startswith(info + "/"), e[0]))
    record = "".join(f"{a},{_record_hash(d)},{len(d)}\n" for a, d, _ in entries)
    record += f"{info}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data, mode in [*entries, (f"{info}/RECORD", record.encode(), 0o644)]:
            item = zipfile.ZipInfo(arcname, _ZIP_TIME)
            item.external_attr = (0o100000 | mode) << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(item, data)
    filename = f"{re.sub(r'[-_.]+', '_', name)}-{version}-{_tag_string(tags)}.whl"
    return Wheel(filename, buffer.getvalue())


# --- building from a source tree -------------------------------------------------------------


def build(tree: Path) -> Wheel:
    """`pip wheel --no-deps` of a copy of the source TREE (the tree itself is not written)."""
    with tempfile.TemporaryDirectory(prefix="bramble-wheel-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(tree, copy, ignore=_SKIP_COPY, symlinks=True)
        out = Path(tmp) / "out"
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out)]
        try:
            proc = subprocess.run(
                [*argv, str(copy)], capture_output=True, text=True, timeout=_BUILD_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise OwnWheelError(f"pip wheel {tree} took over {_BUILD_TIMEOUT:.0f} s") from None
        wheels = sorted(out.glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise OwnWheelError(
                f"pip wheel {tree} failed: {lines[-1] if lines else proc.returncode}"
            )
        return Wheel(wheels[0].name, wheels[0].read_bytes())


def own_wheel() -> Wheel:
    """bramble's wheel at the running version: rebuilt from an installed wheel, or built from
    the source tree the running code comes from."""
    dist = own_distribution()
    if dist is not None and _editable_source(dist) is None and _runs_installed_files(dist):
        wheel = rebuild(dist)
        log.info("rebuilt %s from the installed files", wheel.filename)
        return wheel
    tree = source_tree()
    if tree is not None:
        wheel = build(tree)
        log.info("built %s from %s", wheel.filename, tree)
        return wheel
    raise OwnWheelError(
        f"cannot tell how bramble in {_package_dir()} was installed, so cannot serve it to the "
        "nodes: install it with pip (from a wheel or a source tree)"
    )
