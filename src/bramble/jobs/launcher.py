"""A remote launcher for OpenMPI that enters a network namespace instead of using SSH.

OpenMPI starts its daemons with ``<agent> HOST COMMAND...`` (``--mca plm_rsh_agent``). In the
lab every node is a network namespace on one machine, so this launcher finds the namespace
that holds HOST's address and runs COMMAND there. A lab node is more than a network
namespace: its processes also have the node's hostname and mounts (the shared jobs directory),
so COMMAND joins the namespaces of the node's first process (``nsenter``); a bare network
namespace is entered with ``ip netns exec NS``:

    bramble mpirun --netns -n 3 -- python3 /mnt/jobs/mpi_ring.py

Run it where the node addresses are reachable (in the lab, inside the master namespace).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

from bramble.errors import BrambleError

log = logging.getLogger(__name__)

SCRIPT = """#!/bin/sh
exec {python} -m bramble.jobs.launcher "$@"
"""


def _address(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return socket.gethostbyname(host)


def namespaces() -> list[str]:
    """Names of the network namespaces `ip netns` knows."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def current_namespace() -> str | None:
    """The name `ip netns` has for the network namespace this process is in, if any."""
    out = subprocess.run(["ip", "netns", "identify"], capture_output=True, text=True).stdout
    return out.split()[0] if out.split() else None


def candidates(names: list[str], here: str | None) -> list[str]:
    """The namespaces among NAMES that may hold a node of the cluster run from HERE.

    Two labs on one machine hold the same addresses, so from a lab's master namespace only
    that lab's namespaces are looked at.
    """
    if here and here.startswith("brl-") and here.endswith("-master"):
        prefix = here[: -len("master")]
        return [ns for ns in names if ns.startswith(prefix)]
    return names


def namespace_of(host: str) -> str:
    """The network namespace that holds HOST's IPv4 address; BrambleError if none does."""
    addr = _address(host)
    for ns in candidates(namespaces(), current_namespace()):
        out = subprocess.run(
            ["ip", "-n", ns, "-o", "-4", "addr", "show"], capture_output=True, text=True
        ).stdout
        if any(f" {addr}/" in line for line in out.splitlines()):
            return ns
    raise BrambleError(f"no network namespace holds {addr} ({host})")


def _ns_id(pid: int | str, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def node_holder(ns: str) -> int | None:
    """The oldest process in the network namespace NS with its own hostname (UTS namespace).

    In the lab that is the node's first process, which holds its UTS and mount namespaces;
    None when NS has no such process (a bare network namespace).
    """
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    mine = _ns_id("self", "uts")
    found: list[tuple[int, int]] = []
    for word in out.split():
        if not word.isdigit():
            continue
        uts = _ns_id(word, "uts")
        if not uts or uts == mine:
            continue
        try:
            with open(f"/proc/{word}/stat") as f:
                started = int(f.read().rsplit(")", 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            continue
        found.append((started, int(word)))
    return min(found)[1] if found else None


def command_in(ns: str, command: str) -> list[str]:
    """The command line running the shell COMMAND inside the namespace NS (see module doc)."""
    holder = node_holder(ns)
    if holder is None:
        return ["ip", "netns", "exec", ns, "sh", "-c", command]
    return ["nsenter", "-t", str(holder), "-n", "-u", "-m", "--", "sh", "-c", command]


def write_script(directory: Path) -> Path:
    """Write an executable launcher script into DIRECTORY (for plm_rsh_agent) and return it."""
    path = directory / "bramble-netns-launcher"
    path.write_text(SCRIPT.format(python=sys.executable))
    path.chmod(0o755)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m bramble.jobs.launcher HOST COMMAND...``: run COMMAND in HOST's namespace."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        sys.stderr.write("usage: python -m bramble.jobs.launcher HOST COMMAND...\n")
        return 2
    try:
        ns = namespace_of(args[0])
    except BrambleError as exc:
        sys.stderr.write(f"bramble launcher: {exc}\n")
        return 255
    argv = command_in(ns, " ".join(args[1:]))
    os.execvp(argv[0], argv)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
