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
import shutil
import subprocess
import tempfile
from pathlib import Path

from bramble.errors import BrambleError, MissingToolError
from bramble.jobs.hosts import Host, mpi_hostfile

log = logging.getLogger(__name__)


def mpirun_command(
    hostfile: Path, prog: list[str], *, n: int | None, launcher: str | None, as_root: bool
) -> list[str]:
    """The mpirun command line for PROG on the hosts in HOSTFILE."""
    cmd = ["mpirun", "--hostfile", str(hostfile)]
    if n is not None:
        cmd += ["-n", str(n)]
    if launcher:
        cmd += ["--mca", "plm_rsh_agent", launcher]
    if as_root:
        cmd.append("--allow-run-as-root")
    return [*cmd, *prog]


def run_mpirun(
    hosts: list[Host],
    prog: list[str],
    *,
    n: int | None = None,
    launcher: str | None = None,
    netns: bool = False,
) -> int:
    """Run PROG with OpenMPI across HOSTS; return mpirun's exit status."""
    if not prog:
        raise BrambleError("nothing to run: bramble mpirun [-n N] -- PROG [ARGS...]")
    if not hosts:
        raise BrambleError("no live nodes to run on (see `bramble status`)")
    if shutil.which("mpirun") is None:
        raise MissingToolError("mpirun", "openmpi-bin")
    slots = sum(h.cores for h in hosts)
    if n is not None and n > slots:
        raise BrambleError(f"-n {n} is more than the {slots} slots (cores) of the live nodes")
    with tempfile.TemporaryDirectory(prefix="bramble-mpi-") as tmp:
        hostfile = Path(tmp) / "hostfile"
        hostfile.write_text(mpi_hostfile(hosts))
        if netns:
            from bramble.jobs.launcher import write_script

            launcher = str(write_script(Path(tmp)))
        cmd = mpirun_command(hostfile, prog, n=n, launcher=launcher, as_root=os.geteuid() == 0)
        log.info("running %s", " ".join(cmd))
        return subprocess.run(cmd, check=False).returncode
