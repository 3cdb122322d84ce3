"""Install the rendered files of one role: diff, back up, write atomically, reload.

Planning (`plan_changes`, `services_for`) is pure; `apply_files` does the file work; only
`apply_role` prints and runs systemctl, and never when installing under another root.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bramble.errors import BrambleError, MissingToolError
from bramble.provision.redact import redact
from bramble.provision.render import USER_DATA, private

if TYPE_CHECKING:
    from bramble.cluster import Cluster

log = logging.getLogger(__name__)

ROLES = ("master", "node")
ONCE_UNITS = (
    "bramble-nftables.service",
    "bramble-install.service",
    "bramble-enroll.service",
    "bramble-rotate.service",  # started by its timer only
)
"""Units apply does not restart with the rest (the firewall has its own step above)."""
BACKUPS = "var/backups/bramble"
"""Where replaced files are kept, under the root: never in a directory a daemon reads whole
(Debian's dnsmasq loads every file of /etc/dnsmasq.d, backups included)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One file to install: where, the old text (None if new), the new text."""

    path: str
    old: str | None
    new: str

    @property
    def mode(self) -> int:
        """The mode a new file gets (existing files keep theirs, except secrets)."""
        return 0o600 if private(self.path) else 0o644

    def diff(self, secrets: Iterable[str] = ()) -> str:
        """A unified diff from the installed file to the rendered one, fit to print.

        Private keys, the values of a secrets file and the SECRETS are shown only as
        fingerprints (see `redact`): a changed secret is a changed line, never its value.
        """
        old = [] if self.old is None else redact(self.old, self.path, secrets).splitlines(True)
        new = redact(self.new, self.path, secrets).splitlines(keepends=True)
        label = "/" + self.path
        lines = difflib.unified_diff(
            old, new, fromfile="/dev/null" if self.old is None else label, tofile=label
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def role_files(rendered: Mapping[str, str], role: str) -> dict[str, str]:
    """The files of ROLE, keyed by path under the root (`etc/...`); user-data is not one."""
    check_role(role)
    prefix = role + "/"
    return {
        k[len(prefix) :]: v for k, v in rendered.items() if k.startswith(prefix) and k != USER_DATA
    }


def plan_changes(files: Mapping[str, str], installed: Mapping[str, str | None]) -> list[Change]:
    """The files whose installed text (None: missing) differs from the rendered one."""
    return [
        Change(path, installed.get(path), text)
        for path, text in sorted(files.items())
        if installed.get(path) != text
    ]


def services_for(role: str, paths: Iterable[str]) -> list[list[str]]:
    """The commands that make the services of ROLE pick up the changed PATHS, in order."""
    paths = list(paths)
    commands: list[list[str]] = []
    units = [p.rsplit("/", 1)[-1] for p in paths if p.startswith("etc/systemd/system/")]
    if units:
        commands.append(["systemctl", "daemon-reload"])
    if any(p.startswith("etc/sysctl.d/") for p in paths):
        commands.append(["sysctl", "--system"])
    if any(p.startswith("etc/sysusers.d/") for p in paths):
        commands.append(["systemd-sysusers"])  # before tmpfiles: they name its user
    if any(p.startswith("etc/tmpfiles.d/") for p in paths):
        commands.append(["systemd-tmpfiles", "--create"])
    if any(p.startswith("etc/systemd/network/") for p in paths):
        commands.append(["systemctl", "enable", "systemd-networkd"])
        commands.append(["networkctl", "reload"])
    if any(p.startswith("etc/nftables.d/") for p in paths) or "bramble-nftables.service" in units:
        commands.append(["systemctl", "enable", "bramble-nftables.service"])
        commands.append(["systemctl", "restart", "bramble-nftables.service"])
    if any(p.startswith("etc/dnsmasq.d/") for p in paths):
        commands.append(["systemctl", "restart", "dnsmasq.service"])
    if any(p.startswith("etc/exports.d/") for p in paths):
        commands.append(["exportfs", "-ra"])
    if any(p.startswith("etc/chrony/") for p in paths):
        commands.append(["systemctl", "restart", "chrony.service"])
    restart: list[str] = []
    for unit in units:
        if unit.endswith(".mount"):
            unit = unit.removesuffix(".mount") + ".automount"
        if unit.endswith((".service", ".automount")) and unit not in ONCE_UNITS:
            restart.append(unit)
    if any(p.startswith("etc/bramble/") for p in paths):
        bramble = ["bramble-agent.service"]
        bramble += (
            ["bramble-master.service", "bramble-scheduler.service"]
            if role == "master"
            else ["bramble-worker.service"]
        )
        restart += bramble
    # The installer runs at boot and when asked (it may wait for the master): enabled only.
    if "bramble-install.service" in units:
        commands.append(["systemctl", "enable", "bramble-install.service"])
    # Enrolling may wait for an admin's approval: started without waiting, never restarted.
    if "bramble-enroll.service" in units:
        commands.append(["systemctl", "enable", "bramble-enroll.service"])
        commands.append(["systemctl", "start", "--no-block", "bramble-enroll.service"])
    # The hourly rotation check: its timer enabled and (re)started, the check never run here.
    if "bramble-rotate.timer" in units:
        commands.append(["systemctl", "enable", "bramble-rotate.timer"])
        commands.append(["systemctl", "restart", "bramble-rotate.timer"])
    restart = sorted(set(restart))
    if restart:
        commands.append(["systemctl", "enable", *restart])
        commands.append(["systemctl", "restart", *restart])
    return commands


def read_installed(root: Path, paths: Iterable[str]) -> dict[str, str | None]:
    """The installed text of each of PATHS under ROOT (None when missing or unreadable)."""
    out: dict[str, str | None] = {}
    for path in paths:
        try:
            out[path] = (root / path).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            out[path] = None
    return out


def write_atomic(target: Path, text: str, mode: int, *, keep_mode: bool = True) -> None:
    """Write TEXT to TARGET through a temporary file, fsync, and rename over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if keep_mode and target.exists():
        mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def backup_dir(root: Path, stamp: str) -> Path:
    """A new directory for this apply's backups: ROOT/var/backups/bramble/STAMP[.N], 0700."""
    base = root / BACKUPS
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o700)  # backups of the secrets file and keys are as private as they are
    for n in range(1000):
        candidate = base / (stamp if n == 0 else f"{stamp}.{n}")
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return candidate
    raise BrambleError(f"too many backups named {stamp} in {base}: remove some")


def apply_files(root: Path, changes: Iterable[Change], stamp: str) -> list[Path]:
    """Install CHANGES under ROOT, keeping each replaced file in a backup directory (see
    `backup_dir`) at its own path; return the backups."""
    backups: list[Path] = []
    directory: Path | None = None
    for change in changes:
        target = root / change.path
        if target.exists():
            directory = directory or backup_dir(root, stamp)
            backup = directory / change.path
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(target, backup)
            if private(change.path):
                backup.chmod(0o600)
            backups.append(backup)
        write_atomic(target, change.new, change.mode, keep_mode=not private(change.path))
        log.info("installed %s", target)
    return backups


def _colour(diff: str) -> str:
    out = []
    for line in diff.splitlines(keepends=True):
        if line.startswith(("+++", "---")):
            out.append(f"\x1b[1m{line.rstrip()}\x1b[0m\n")
        elif line.startswith("+"):
            out.append(f"\x1b[32m{line.rstrip()}\x1b[0m\n")
        elif line.startswith("-"):
            out.append(f"\x1b[31m{line.rstrip()}\x1b[0m\n")
        elif line.startswith("@@"):
            out.append(f"\x1b[36m{line.rstrip()}\x1b[0m\n")
        else:
            out.append(line)
    return "".join(out)


def _run(commands: list[list[str]]) -> None:
    if commands and shutil.which(commands[0][0]) is None:
        raise MissingToolError(commands[0][0], "systemd")
    for command in commands:
        print("  $ " + " ".join(command))
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"    failed ({result.returncode}): {result.stderr.strip()}", file=sys.stderr)


def check_role(role: str) -> None:
    """BrambleError unless ROLE is master or node."""
    if role not in ROLES:
        raise BrambleError(f"unknown role '{role}': use --role master or --role node")


def apply_role(
    cluster: Cluster,
    *,
    role: str,
    root: Path | None,
    dry_run: bool,
    checks: bool | None = None,
) -> list[Change]:
    """`bramble apply`: render ROLE's files, show the diff, install them and reload services.

    The cluster's spec was validated when it was loaded, before anything is read or written
    under the root, so a bad spec changes nothing. On the real root the machine is checked
    first (bramble in /opt/bramble, the services' packages) unless CHECKS is False; under
    --root only when CHECKS is True (then against that root). Services are touched only when
    installing into the real root. Secrets and private keys are never printed, only their
    fingerprints.
    """
    from bramble import __version__
    from bramble.provision import preflight
    from bramble.provision.render import render_cluster

    check_role(role)
    files = role_files(render_cluster(cluster), role)
    target_root = root if root is not None else Path("/")
    if checks is None:
        checks = root is None
        if not checks:
            print(f"not checking {target_root} for what the {role} needs (--root; --checks does)")
    if checks:
        preflight.check(role, target_root, __version__)
    secrets = cluster.secrets_if_present()
    hidden = (secrets.admin_token, secrets.telemetry_key.hex()) if secrets is not None else ()
    changes = plan_changes(files, read_installed(target_root, files))
    if not changes:
        print(f"no changes: the {len(files)} {role} files under {target_root} are up to date")
        return []
    tty = sys.stdout.isatty()
    for change in changes:
        diff = change.diff(hidden)
        sys.stdout.write(_colour(diff) if tty else diff)
    verb = "would change" if dry_run else "changed"
    if dry_run:
        print(f"dry run: {verb} {len(changes)} of {len(files)} files under {target_root}")
        return changes
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backups = apply_files(target_root, changes, stamp)
    kept = ""
    if backups:
        name = backups[0].relative_to(target_root / BACKUPS).parts[0]
        kept = f"; the replaced files are kept in /{BACKUPS}/{name}/ ({len(backups)})"
    print(f"{verb} {len(changes)} of {len(files)} files under {target_root}{kept}")
    commands = services_for(role, (c.path for c in changes))
    if root is not None:
        if commands:
            print("not touching services (--root given); on the target run:")
            for command in commands:
                print("  $ " + " ".join(command))
    else:
        _run(commands)
    return changes
