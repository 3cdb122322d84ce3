"""A remote launcher for OpenMPI that enters a network namespace instead of using SSH.

OpenMPI starts its daemons with ``<agent> HOST COMMAND...`` (``--mca plm_rsh_agent``). In the
lab every node is a network namespace on one machine, so this launcher finds the namespace
that holds HOST's address and runs COMMAND there with ``ip netns exec NS sh -c``:

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


def namespace_of(host: str) -> str:
    """The network namespace that holds HOST's IPv4 address; BrambleError if none does."""
    addr = _address(host)
    for ns in namespaces():
        out = subprocess.run(
            ["ip", "-n", ns, "-o", "-4", "addr", "show"], capture_output=True, text=True
        ).stdout
        if any(f" {addr}/" in line for line in out.splitlines()):
            return ns
    raise BrambleError(f"no network namespace holds {addr} ({host})")


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
    command = " ".join(args[1:])
    os.execvp("ip", ["ip", "netns", "exec", ns, "sh", "-c", command])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
