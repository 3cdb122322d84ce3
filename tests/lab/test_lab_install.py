"""A lab node installs bramble the way hardware does (root).

The master's wheels directory is filled with `bramble wheels fetch` (pip on the host, with its
cache); the node, cut off from everything but the cluster LAN, runs the rendered node
installer, which installs from the master's /dist/ into the node's own /opt/bramble; the
agent from that venv then shows up on the master.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bramble.init import secrets_text
from bramble.lab import commands, netns
from bramble.lab import install as lab_install

pytestmark = [pytest.mark.root, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the lab needs root (network namespaces)", allow_module_level=True)
if (missing := netns.missing_tool()) is not None:
    pytest.skip(f"lab tool missing: {missing}", allow_module_level=True)
if not Path(lab_install.BOARD_PYTHON).exists():
    pytest.skip(
        f"no {lab_install.BOARD_PYTHON} to play the board's Python", allow_module_level=True
    )

SPEC = """
[telemetry]
interval = 0.5

[[nodes]]
name = "alpha"
mac = "02:b7:ab:00:00:01"
address = "10.42.0.31"

[[nodes]]
name = "beta"
mac = "02:b7:ab:00:00:02"
address = "10.42.0.32"
"""


def bramble(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bramble", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"bramble {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[commands.Lab]:
    prefix = "i" + os.urandom(3).hex()
    directory = tmp_path_factory.mktemp("lab")
    (directory / "bramble.toml").write_text(SPEC)
    (directory / "bramble.secrets.toml").write_text(secrets_text())
    (directory / "bramble.secrets.toml").chmod(0o600)
    try:
        spec = str(directory / "bramble.toml")
        bramble("lab", "up", "--spec", spec, "--prefix", prefix, "--port", "0", "--no-jobs")
        yield commands.load_lab(prefix)
    finally:
        subprocess.run(
            [sys.executable, "-m", "bramble", "lab", "down", "--prefix", prefix],
            capture_output=True,
            timeout=120,
        )
        assert commands.leftovers(prefix) == []


def _in(lab: commands.Lab, node: str, *argv: str) -> str:
    holder = commands.daemons.running(lab.plan.state / "run", f"{node}.init")
    assert holder is not None
    proc = subprocess.run(
        commands.daemons.in_node(holder, list(argv)), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _nodes(lab: commands.Lab) -> dict[str, Any]:
    return {n["name"]: n for n in httpx.get(lab.url + "api/nodes", timeout=5).json()}


@pytest.mark.timeout(1200)
def test_a_node_installs_bramble_from_the_master_and_its_agent_shows_up(
    lab: commands.Lab,
) -> None:
    host_had_opt_bramble = Path("/opt/bramble").exists()
    # The administrator's one command, with pip's cache on the host.
    fetched = bramble("wheels", "fetch", "--platform", "x86_64", "--spec", str(lab.spec_path))
    assert "wheels" in fetched.stdout
    # The master's requirement (its own wheel is made on the first request).
    requirement = lab_install.master_requirement(lab)
    name, _, version = requirement.partition("==")
    assert name in ("bramble-cluster", "bramble") and version

    assert not lab_install.is_offline(lab, "alpha"), "the probe must see the host at first"
    lab_install.offline(lab, "alpha")
    assert lab_install.is_offline(lab, "alpha"), "alpha still reaches beyond the cluster"
    _, out = lab_install.run_installer(lab, "alpha", tries=3)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"installed {requirement} from http://10.42.0.1:8080/dist/ into /opt/bramble" in (
        out.stderr
    )

    # Its own venv, not the host's: bramble and its dependencies from /opt/bramble only.
    probe = (
        "import sys, bramble, fastapi, importlib.metadata as m;"
        f"print(sys.prefix, bramble.__file__, fastapi.__file__, m.version({name!r}))"
    )
    prefix, package, dependency, installed = _in(
        lab, "alpha", "/opt/bramble/bin/python", "-c", probe
    ).split()
    assert prefix == "/opt/bramble" and installed == version
    assert package.startswith("/opt/bramble/lib/") and dependency.startswith("/opt/bramble/lib/")
    cfg = (lab_install.venv_dir(lab, "alpha") / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    assert Path("/opt/bramble").exists() == host_had_opt_bramble, "the host's /opt is untouched"
    assert _in(lab, "beta", "sh", "-c", "ls /opt/bramble | wc -l").strip() == "0"

    # Run again: already at the master's version, nothing to do.
    _, again = lab_install.run_installer(lab, "alpha", tries=1)
    assert (
        again.returncode == 0 and "is installed in /opt/bramble, as on the master" in again.stderr
    )

    # The agent from that venv (the Python engine, so its command line shows where it runs
    # from) shows up on the master with the boot it was given.
    boot = lab_install.start_agent_from_venv(lab, "alpha", engine="python")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        node = _nodes(lab).get("alpha", {})
        if node.get("boot") == boot and node.get("status") == "up":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"alpha's venv agent not up on the master: {_nodes(lab)}")
    pid = commands.daemons.running(lab.plan.state / "run", "alpha.agent")
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0] == b"/opt/bramble/bin/python"
    assert b"/opt/bramble/lib/python3" in b" ".join(cmdline)
    assert _nodes(lab)["beta"]["status"] == "up"
