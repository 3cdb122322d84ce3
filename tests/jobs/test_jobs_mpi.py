"""mpirun across live membership: a 3-rank mpi4py ring on loopback nodes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bramble_testing import JOB_EXAMPLES

from bramble.errors import BrambleError
from bramble.jobs.hosts import Host
from bramble.jobs.launcher import namespace_of, write_script
from bramble.jobs.mpirun import run_mpirun

pytestmark = pytest.mark.slow


def _needs_mpi() -> None:
    if shutil.which("mpirun") is None:
        pytest.skip("OpenMPI (openmpi-bin) not installed")
    pytest.importorskip("mpi4py")


def test_ring_three_ranks_on_local_nodes(capfd: pytest.CaptureFixture[str]) -> None:
    _needs_mpi()
    hosts = [Host(name=f"node-{i}", address="127.0.0.1", cores=1) for i in (1, 2, 3)]
    rc = run_mpirun(hosts, [sys.executable, str(JOB_EXAMPLES / "mpi_ring.py"), "4"], n=3)
    out = capfd.readouterr().out
    assert rc == 0, out
    assert "ring of 3 ranks" in out and "token 12 after 4 laps" in out
    assert "check: ok" in out


def test_a_python_without_mpi4py_is_named_with_what_to_install(tmp_path: Path) -> None:
    # A fresh venv, as a user's without the `mpi` extra: one line, not a traceback per rank.
    if shutil.which("mpirun") is None:
        pytest.skip("OpenMPI (openmpi-bin) not installed")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)  # fmt: skip
    python = str(tmp_path / "venv" / "bin" / "python")
    hosts = [Host(name="node-1", address="127.0.0.1", cores=2)]
    with pytest.raises(BrambleError, match=r"mpi_ring\.py imports mpi4py, which .* cannot") as e:
        run_mpirun(hosts, [python, str(JOB_EXAMPLES / "mpi_ring.py")], n=2)
    assert "pip install 'bramble-cluster[mpi]'" in str(e.value)
    assert "\n" not in str(e.value)


def test_more_ranks_than_slots_is_refused() -> None:
    hosts = [Host(name="node-1", address="127.0.0.1", cores=2)]
    with pytest.raises(BrambleError, match="more than the 2 slots"):
        run_mpirun(hosts, ["true"], n=3)
    with pytest.raises(BrambleError, match="no live nodes"):
        run_mpirun([], ["true"])


@pytest.mark.root
def test_netns_launcher_runs_the_command_in_the_namespace_of_the_address(
    tmp_path: Path,
) -> None:
    ns = f"brjt{os.getpid() % 100000}"
    addr = f"10.{os.getpid() % 200 + 20}.77.5"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
        assert namespace_of(addr) == ns
        script = write_script(tmp_path)
        out = subprocess.run(
            [str(script), addr, "ip", "netns", "identify", ";", "echo", "ok"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.split() == [ns, "ok"]
        with pytest.raises(BrambleError, match="no network namespace holds"):
            namespace_of("10.255.255.254")
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
