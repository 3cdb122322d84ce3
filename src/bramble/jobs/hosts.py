"""Live membership as host lists: OpenMPI hostfile, /etc/hosts block, Ansible inventory, Dask.

Membership is what the master sees now: the nodes whose status is ``up`` in ``/api/nodes``,
with one MPI slot per core. The renderers are pure; `bramble.client.jobs.live_nodes` asks the
master.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bramble.errors import BrambleError

log = logging.getLogger(__name__)

HostFormat = Literal["mpi", "hosts", "ansible", "dask"]
FORMATS: tuple[HostFormat, ...] = ("mpi", "hosts", "ansible", "dask")


class Host(BaseModel):
    """One live node: name, address and core count."""

    model_config = ConfigDict(frozen=True)

    name: str
    address: str
    cores: int


def hosts_from_nodes(nodes: list[dict[str, Any]]) -> list[Host]:
    """The up nodes of an `/api/nodes` answer, sorted by name (slots: cores, at least 1)."""
    out: list[Host] = []
    for node in nodes:
        if node.get("status") != "up":
            continue
        sample = node.get("sample") or {}
        cores = len(sample.get("cores") or ()) or 1
        out.append(Host(name=str(node["name"]), address=str(node["address"]), cores=cores))
    return sorted(out, key=lambda h: h.name)


def mpi_hostfile(hosts: list[Host]) -> str:
    """An OpenMPI hostfile; nodes sharing one address (local processes) share one line."""
    slots: dict[str, int] = {}
    for host in hosts:
        slots[host.address] = slots.get(host.address, 0) + host.cores
    return "".join(f"{addr} slots={n}\n" for addr, n in slots.items())


def hosts_block(hosts: list[Host], domain: str) -> str:
    """An /etc/hosts block between bramble markers."""
    lines = ["# bramble nodes (begin)"]
    lines += [f"{h.address}\t{h.name}.{domain} {h.name}" for h in hosts]
    lines.append("# bramble nodes (end)")
    return "\n".join(lines) + "\n"


def ansible_inventory(hosts: list[Host]) -> str:
    """An Ansible INI inventory with every live node in the group ``bramble``."""
    lines = ["[bramble]"]
    lines += [f"{h.name} ansible_host={h.address} bramble_cores={h.cores}" for h in hosts]
    return "\n".join(lines) + "\n"


def render(fmt: HostFormat, hosts: list[Host], *, domain: str, scheduler: str) -> str:
    """The host list in FMT."""
    if fmt == "mpi":
        return mpi_hostfile(hosts)
    if fmt == "hosts":
        return hosts_block(hosts, domain)
    if fmt == "ansible":
        return ansible_inventory(hosts)
    if fmt == "dask":
        return scheduler + "\n"
    raise BrambleError(f"unknown hosts format {fmt!r} (one of: {', '.join(FORMATS)})")
