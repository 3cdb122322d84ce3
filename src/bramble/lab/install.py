"""A lab node installs bramble the way a board does: the rendered installer, run in the node,
from the master's /dist/ over the cluster network, into the node's own /opt/bramble.

The node can be cut off from everything but the cluster LAN first (`offline`), as a board of
an offline cluster is, so the master's wheels directory is all it has.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bramble.errors import BrambleError
from bramble.lab import daemons, topology
from bramble.lab.topology import Lab

BOARD_ENV = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"]
BOARD_PYTHON = "/usr/bin/python3"  # what bramble-install.service runs it with


def _holder(lab: Lab, name: str) -> int:
    holder = daemons.running(lab.plan.state / "run", f"{name}.init")
    if holder is None:
        lab.plan.node(name)
        raise BrambleError(f"{name} is not running")
    return holder


def offline(lab: Lab, name: str) -> None:
    """Let NAME send only on the cluster LAN (and loopback, and the telemetry multicast)."""
    net = lab.spec.network.subnet
    rules = (
        "table inet bramble_lab_offline {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy drop;\n"
        '    oifname "lo" accept\n'
        f"    ip daddr {{ {net}, 224.0.0.0/4 }} accept\n"
        "  }\n"
        "}\n"
    )
    node = lab.plan.node(name)
    subprocess.run(
        ["ip", "netns", "exec", node.netns, "nft", "-f", "-"],
        input=rules,
        text=True,
        check=True,
        capture_output=True,
    )


def master_requirement(lab: Lab, timeout: float = 900) -> str:
    """What the lab's master serves its nodes (`NAME==VERSION`), once its own wheel is made."""
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(lab.url + "dist/requirement", timeout=10)
        except httpx.HTTPError as exc:
            last = str(exc)
        else:
            if answer.status_code == 200:
                return answer.text.strip()
            last = answer.text
        time.sleep(1)
    raise BrambleError(f"the lab's master served no requirement in {timeout:.0f} s: {last}")


def installer_text(lab: Lab) -> str:
    """The node image's installer, rendered from the lab's spec as for hardware."""
    from bramble.provision.render import INSTALLER, render

    return render(lab.spec, None)["node" + INSTALLER]


def venv_dir(lab: Lab, name: str) -> Path:
    """NAME's /opt/bramble, as seen from the host."""
    return topology.node_venv(lab.plan.state / "nodes" / name)


def run_installer(
    lab: Lab, name: str, *, tries: int = 0, timeout: float = 900
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run the rendered installer in NAME with a board's environment; seconds taken, result."""
    holder = _holder(lab, name)
    node_dir = lab.plan.state / "nodes" / name
    script = node_dir / "bramble-install"
    script.write_text(installer_text(lab))
    argv = [*BOARD_ENV, BOARD_PYTHON, str(script), *(["--tries", str(tries)] if tries else [])]
    started = time.monotonic()
    proc = subprocess.run(
        daemons.in_node(holder, argv), capture_output=True, text=True, timeout=timeout
    )
    return time.monotonic() - started, proc


def start_agent_from_venv(lab: Lab, name: str, *, engine: str | None = None) -> int:
    """Replace NAME's agent by `/opt/bramble/bin/bramble agent`, as its unit runs it; the
    boot id it reports (a new one, so the master takes it for a reboot, not a replay)."""
    from bramble.lab.build import next_boot
    from bramble.trust.node import CREDENTIALS

    holder = _holder(lab, name)
    run = lab.plan.state / "run"
    boot = next_boot(lab.plan.state / "nodes" / name)
    # The node's own spec, beside the credentials its enrollment left (its own key and name),
    # as on a board; the lab's spec and shared key for a lab without a join token.
    node_spec = lab.plan.state / "nodes" / name / "bramble.toml"
    enrolled = (node_spec.parent / CREDENTIALS).exists()
    spec_path = node_spec if enrolled else lab.spec_path
    argv = ["/opt/bramble/bin/bramble", "agent", "--spec", str(spec_path)]
    argv += ["--boot-id", str(boot), *(["--engine", engine] if engine else [])]
    with daemons.locked(run):
        daemons.stop(run, [f"{name}.agent"])
        daemons.start(run, f"{name}.agent", daemons.in_node(holder, [*BOARD_ENV, *argv]))
    return boot


def is_offline(lab: Lab, name: str) -> bool:
    """Whether NAME cannot reach the host's side of the uplink (the way to any index): a
    refused connection reached it, a blocked or timed-out one did not."""
    node = lab.plan.node(name)
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('{lab.plan.uplink_host}', 443), 3).close()\n"
        "except ConnectionRefusedError:\n"
        "    sys.exit(1)\n"
        "except OSError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    proc = subprocess.run(
        ["ip", "netns", "exec", node.netns, BOARD_PYTHON, "-c", probe], capture_output=True
    )
    return proc.returncode == 0
