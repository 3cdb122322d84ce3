"""What a master or node needs before `apply` installs its files: bramble itself and its tools.

The rendered units run /opt/bramble/bin/bramble and the services apply restarts come from
Debian packages; a missing one would otherwise show up later as a unit that cannot start.
Each check looks at files under a root directory (`/`, or `apply --root`), so it is the same
on the machine and on an image being built, and testable without root.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bramble.errors import BrambleError

VENV = "opt/bramble"
BIN_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")
LIB_DIRS = ("usr/lib/systemd", "lib/systemd")
UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
INSTALL_HINT = 'install it as the README says ("Install the master"), then apply again'


@dataclass(frozen=True, slots=True)
class Need:
    """A thing a role needs: a name, where it may be found under the root, and the fix."""

    what: str
    paths: tuple[str, ...]
    fix: str
    program: bool = True

    def present(self, root: Path) -> bool:
        """Whether one of the paths exists under ROOT (and is executable, for programs)."""
        return any(
            (root / p).is_file() and (not self.program or _usable(root / p)) for p in self.paths
        )


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _program(name: str, package: str) -> Need:
    return Need(name, tuple(f"{d}/{name}" for d in BIN_DIRS), f"apt install {package}")


def _systemd(name: str, fix: str) -> Need:
    return Need(name, tuple(f"{d}/{name}" for d in LIB_DIRS), fix)


def _unit(name: str, package: str) -> Need:
    paths = tuple(f"{d}/{name}" for d in UNIT_DIRS)
    return Need(name, paths, f"apt install {package}", program=False)


NETWORKD = _systemd(
    "systemd-networkd",
    "apt install systemd-networkd (part of the systemd package before Debian 13)",
)
NEEDS: dict[str, tuple[Need, ...]] = {
    "master": (
        _program("systemctl", "systemd (bramble's units need systemd as init)"),
        _program("dnsmasq", "dnsmasq"),
        _unit("dnsmasq.service", "dnsmasq (dnsmasq-base alone has no service)"),
        _program("nft", "nftables"),
        _program("exportfs", "nfs-kernel-server"),
        _program("chronyd", "chrony"),
        NETWORKD,
    ),
    "node": (
        _program("systemctl", "systemd (bramble's units need systemd as init)"),
        _program("mount.nfs4", "nfs-common"),
        _program("chronyd", "chrony"),
        NETWORKD,
        _systemd("systemd-resolved", "apt install systemd-resolved"),
    ),
}


def _installed_version(root: Path) -> str | None:
    """The version of bramble installed in ROOT/opt/bramble, read from its metadata."""
    for site in sorted((root / VENV / "lib").glob("python3*/site-packages")):
        for dist in metadata.distributions(path=[str(site)]):
            name = (dist.metadata["Name"] or "").lower().replace("_", "-")
            if name in ("bramble-cluster", "bramble") and (site / "bramble").is_dir():
                return dist.version
    return None


def problems(role: str, root: Path, version: str) -> list[str]:
    """One line per thing ROLE lacks under ROOT: what, and how to get it. VERSION is the
    bramble that renders the files, which /opt/bramble should run."""
    lines = []
    bramble = root / VENV / "bin" / "bramble"
    if not _usable(bramble):
        lines.append(f"/{VENV}/bin/bramble: not found (the units run it): {INSTALL_HINT}")
    else:
        installed = _installed_version(root)
        if installed is not None and installed != version:
            lines.append(
                f"/{VENV} has bramble {installed}, this is {version}: upgrade it "
                f"(/{VENV}/bin/pip install bramble-cluster=={version}) or apply with "
                f"/{VENV}/bin/bramble"
            )
    lines += [f"{n.what}: not found: {n.fix}" for n in NEEDS[role] if not n.present(root)]
    return lines


class PreflightError(BrambleError):
    """The machine lacks what its role needs; nothing was changed."""

    def __init__(self, role: str, root: Path, missing: Iterable[str]) -> None:
        lines = list(missing)
        where = "this machine" if root == Path("/") else str(root)
        super().__init__(
            f"{where} is not ready for the {role}'s files ({len(lines)} missing; nothing "
            "changed; --no-checks skips this):\n" + "\n".join("  " + line for line in lines)
        )


def check(role: str, root: Path, version: str) -> None:
    """Raise PreflightError listing what ROLE lacks under ROOT."""
    missing = problems(role, root, version)
    if missing:
        raise PreflightError(role, root, missing)
