"""`bramble lab add`: plug a board that was not there before into a running lab.

As a user plugs in a board: a new namespace cabled to the switch, DHCP from the master, a
fresh credentials store, `bramble enroll`, the agent and the worker. With no MAC the board is
one more of the lab's spec (added to it; the master reads the spec's MACs again when the
spec file changes), so it enrolls on its own; with a MAC the spec does not know, the board
waits in `bramble nodes pending` until approved (then `bramble lab start NAME` boots it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bramble.errors import BrambleError
from bramble.lab import build, commands, daemons, netns
from bramble.lab.build import Say
from bramble.lab.topology import Lab, NodePlan

WAIT_FOR_APPROVAL = 5.0
"""Seconds `lab add` waits for a board of an unknown MAC to enroll (an admin may be quick)."""


def _free_mac(used: set[str]) -> str:
    for i in range(1, 65536):
        mac = f"02:b7:01:00:{i // 256:02x}:{i % 256:02x}"
        if mac not in used:
            return mac
    raise BrambleError("no free lab MAC left")


def _free_name(taken: set[str]) -> str:
    i = len(taken) + 1
    while f"node-{i}" in taken:
        i += 1
    return f"node-{i}"


def _state(lab: Lab) -> tuple[Path, dict[str, object]]:
    path = lab.plan.state / "lab.json"
    return path, json.loads(path.read_text())


def _plug(lab: Lab, node: NodePlan) -> None:
    """The board's namespace and its cable to the switch (eth0 with its MAC)."""
    netns.batch([f"netns add {node.netns}"])
    netns.batch(
        [
            f"link add {node.port} type veth peer name eth0 netns {node.netns} address {node.mac}",
            f"link set {node.port} master {lab.plan.bridge} up",
        ],
        ns=lab.plan.switch_ns,
    )
    netns.batch(["link set lo up", "link set eth0 up"], ns=node.netns)


def add(name: str | None, mac: str | None, *, prefix: str | None, say: Say) -> str:
    """Plug a new board into the lab PREFIX: NAME, MAC (default: a free one, added to the
    lab's spec). The board's name."""
    from bramble.provision.nodes import with_node
    from bramble.trust.policy import normal_mac

    started = time.monotonic()
    lab = commands.load_lab(prefix)
    spec_macs = {n.mac: n.name for n in lab.spec.nodes}
    plugged = {n.mac: n.name for n in lab.plan.nodes}
    if mac is not None:
        try:
            mac = normal_mac(mac)
        except ValueError as exc:
            raise BrambleError(str(exc)) from None
    if mac in spec_macs:
        name = spec_macs[mac]
        if daemons.running(lab.plan.state / "run", f"{name}.init") is not None:
            raise BrambleError(f"{name} ({mac}) is plugged in already")
    elif mac is not None and mac in plugged:
        raise BrambleError(f"{plugged[mac]} ({mac}) is plugged in already")
    elif mac is None:
        taken = {n.name for n in lab.plan.nodes}
        name = name or _free_name(taken)
        if name in taken:
            raise BrambleError(f"the lab has a node called {name} already")
        mac = _free_mac(set(plugged))
        text, _ = with_node(lab.spec_path.read_text(), name, mac, None, str(lab.spec_path))
        lab.spec_path.write_text(text)  # the master reads it again when the board asks
        lab = commands.load_lab(prefix)
        say(f"{name} ({mac}) added to the lab's spec")
    else:
        name = name or "board-" + mac[-5:].replace(":", "")
        if name in {n.name for n in lab.plan.nodes}:
            raise BrambleError(f"the lab has a node called {name} already")
        path, data = _state(lab)
        extra = list(data.get("extra", []))  # type: ignore[call-overload]
        extra.append({"name": name, "mac": mac})
        path.write_text(json.dumps({**data, "extra": extra}))
        lab = commands.load_lab(prefix)
        say(f"{name} ({mac}): a MAC the spec does not know")
    node = lab.plan.node(name)
    _plug(lab, node)
    known = mac in {n.mac for n in lab.spec.nodes}
    timeout = 30.0 if known else WAIT_FOR_APPROVAL
    if build.boot_nodes(lab, [name], say, enroll_timeout=timeout) and lab.jobs:
        build.start_workers(lab, [name], say)
    say(f"{name} plugged in after {time.monotonic() - started:.1f} s")
    return name
