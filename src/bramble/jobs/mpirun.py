"""`bramble mpirun`: OpenMPI across the live nodes, with a hostfile made from membership.

On hardware OpenMPI starts the remote ranks over SSH (its default). ``--launcher CMD``
replaces SSH (``--mca plm_rsh_agent``); ``--netns`` uses bramble's own launcher, which enters
the network namespace of a lab node (see `bramble.jobs.launcher`). Nodes that share one
address (local processes) share one line of the hostfile, so a loopback cluster runs every
rank on this machine.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bramble.errors import BrambleError, MissingToolError
from bramble.jobs.hosts import Host, mpi_hostfile

log = logging.getLogger(__name__)

# OpenMPI's control connections use these ports, so the master's firewall (which admits
# only the cluster's services from the LAN) can let the nodes' daemons reach `mpirun`.
MPI_PORTS = range(47000, 47100)


def mpirun_command(
    hostfile: Path,
    prog: list[str],
    *,
    n: int | None,
    launcher: str | None,
    as_root: bool,
    subnet: str | None = None,
    by_node: bool = False,
) -> list[str]:
    """The mpirun command line for PROG on the hosts in HOSTFILE.

    With SUBNET (the cluster's), OpenMPI's control and data traffic stays on the cluster LAN:
    the master also has an uplink, and OpenMPI would otherwise offer its address to the nodes.
    """
    cmd = ["mpirun", "--hostfile", str(hostfile)]
    if n is not None:
        cmd += ["-n", str(n)]
    if by_node:  # round robin over the nodes rather than filling each node's cores first
        cmd += ["--map-by", "node"]
    if launcher:
        cmd += ["--mca", "plm_rsh_agent", launcher]
    if subnet:
        cmd += ["--mca", "oob_tcp_if_include", subnet, "--mca", "btl_tcp_if_include", subnet]
    ports = f"{MPI_PORTS.start}-{MPI_PORTS.stop - 1}"
    cmd += ["--mca", "oob_tcp_dynamic_ipv4_ports", ports]
    if as_root:
        cmd.append("--allow-run-as-root")
    return [*cmd, *prog]


MPI4PY_HINT = "pip install 'bramble-cluster[mpi]' (or apt install python3-mpi4py)"


def check_mpi4py(prog: list[str]) -> None:
    """Refuse, in one line, a Python program that imports mpi4py where PROG's interpreter
    cannot: otherwise every rank fails with a traceback and mpirun adds a page of its own.

    Checked here, on the machine that starts the ranks (on a loopback cluster, all of them);
    the nodes need mpi4py in the same interpreter too.
    """
    if not re.fullmatch(r"python[0-9.]*", os.path.basename(prog[0])):
        return
    script = next((Path(a) for a in prog[1:] if a.endswith(".py")), None)
    try:
        uses_mpi4py = script is not None and "mpi4py" in script.read_text(errors="replace")
    except OSError:  # only on the nodes, say: mpirun will tell
        return
    if not uses_mpi4py:
        return
    try:
        probe = subprocess.run(
            [prog[0], "-c", "import mpi4py"], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return
    if probe.returncode != 0:
        raise BrambleError(
            f"{script} imports mpi4py, which {prog[0]} cannot import: {MPI4PY_HINT} "
            "for that Python, here and on every node"
        )


def run_mpirun(
    hosts: list[Host],
    prog: list[str],
    *,
    n: int | None = None,
    launcher: str | None = None,
    netns: bool = False,
    subnet: str | None = None,
    by_node: bool = False,
) -> int:
    """Run PROG with OpenMPI across HOSTS; return mpirun's exit status."""
    if not prog:
        raise BrambleError("nothing to run: bramble mpirun [-n N] -- PROG [ARGS...]")
    if not hosts:
        raise BrambleError("no live nodes to run on (see `bramble status`)")
    if shutil.which("mpirun") is None:
        raise MissingToolError("mpirun", "openmpi-bin")
    check_mpi4py(prog)
    slots = sum(h.cores for h in hosts)
    if n is not None and n > slots:
        raise BrambleError(f"-n {n} is more than the {slots} slots (cores) of the live nodes")
    with tempfile.TemporaryDirectory(prefix="bramble-mpi-") as tmp:
        hostfile = Path(tmp) / "hostfile"
        hostfile.write_text(mpi_hostfile(hosts))
        if netns:
            from bramble.jobs.launcher import write_script

            launcher = str(write_script(Path(tmp)))
        cmd = mpirun_command(
            hostfile,
            prog,
            n=n,
            launcher=launcher,
            as_root=os.geteuid() == 0,
            subnet=subnet,
            by_node=by_node,
        )
        log.info("running %s", " ".join(cmd))
        return subprocess.run(cmd, check=False).returncode
