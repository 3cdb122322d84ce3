"""What a lab of N nodes needs from this machine: memory, and kernel tables sized for it.

Every network namespace shares the kernel's neighbour (ARP and NDP) tables: their limits
(`gc_thresh1..3`) are global and set only from the root namespace. With Dask workers every
lab node soon holds an entry for every other node, so a lab of N nodes holds about N² entries
at once; past `gc_thresh3` (1,024 by default, full at 32 nodes) the kernel logs "neighbor
table overflow" and drops packets, the agents' heartbeats included (UdpSndbufErrors), and
every node goes stale. `lab up` raises the limits for its node count first (never lowers
them: another lab may need them).

Memory per node is measured, not guessed: `bench/lab.py` reports the proportional set size
of each node's processes (its first process, DHCP client, agent and Dask worker) and of the
master's; the figures below are those measurements rounded up, and the lab test checks a
real lab against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bramble.errors import BrambleError

# Measured by bench/lab.py (PSS, MiB), rounded up; see bench/RESULTS.md.
NODE_MIB_JOBS = 60.0  # a node with a light Dask worker, after jobs ran (measured 56)
NODE_MIB_NO_JOBS = 3.0  # a node without one (--no-jobs): sleep, udhcpc, the compiled agent
MASTER_MIB = 300.0  # the master namespace: master service, scheduler, daemons (measured 230)
# Room left to the host and everything else running on it.
HEADROOM = 0.8
# The kernel's default gc_thresh3, left to the host on top of what the lab needs.
HOST_NEIGHBOURS = 1024
NEIGH_DIRS = (Path("/proc/sys/net/ipv4/neigh/default"), Path("/proc/sys/net/ipv6/neigh/default"))
# Threads of one lab node (its processes, light worker included): measured 5 to 6.
NODE_THREADS = 8


@dataclass(frozen=True, slots=True)
class Need:
    """What a lab of NODES nodes needs."""

    nodes: int
    jobs: bool

    @property
    def memory_mib(self) -> float:
        """Memory for the whole lab: the master's and every node's."""
        per_node = NODE_MIB_JOBS if self.jobs else NODE_MIB_NO_JOBS
        return MASTER_MIB + self.nodes * per_node

    @property
    def neighbours(self) -> int:
        """Neighbour entries the lab may hold at once, across its namespaces.

        Each node: the master and every other node (Dask workers fetch data from each other)
        and its multicast group; the master: every node and its groups.
        """
        n = self.nodes
        return n * (n + 1) + (n + 2)


def neighbour_limits(need: Need, current: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """The gc_thresh1..3 a lab of NEED wants, given the CURRENT ones; None if they suffice.

    They suffice while the lab would fill at most half of gc_thresh3; else the limit becomes
    room for the host's own entries plus twice the lab's (another lab, or this one rebuilt
    while the old entries age out). Only ever raised.
    """
    t1, t2, t3 = current
    if t3 >= 2 * need.neighbours:
        return None
    want = HOST_NEIGHBOURS + 2 * need.neighbours
    return t1, max(t2, want // 2), want


def read_neighbour_limits(directory: Path) -> tuple[int, int, int]:
    """gc_thresh1..3 from DIRECTORY (a /proc/sys/net/*/neigh/default)."""
    t1, t2, t3 = (int((directory / f"gc_thresh{i}").read_text()) for i in (1, 2, 3))
    return t1, t2, t3


def size_neighbour_tables(need: Need, dirs: tuple[Path, ...] = NEIGH_DIRS) -> list[str]:
    """Raise the kernel's neighbour-table limits for NEED; what was changed, said for a user."""
    said = []
    for directory in dirs:
        if not directory.is_dir():
            continue  # e.g. no IPv6
        current = read_neighbour_limits(directory)
        limits = neighbour_limits(need, current)
        if limits is None:
            continue
        try:
            # gc_thresh3 first: the kernel does not check their order, but readers expect it.
            for i in (3, 2, 1):
                (directory / f"gc_thresh{i}").write_text(str(limits[i - 1]))
        except OSError as exc:
            raise BrambleError(
                f"cannot raise {directory}/gc_thresh3 to {limits[2]} ({exc.strerror}): "
                f"a {need.nodes}-node lab needs it; run `bramble lab up` as root"
            ) from None
        family = directory.parent.parent.name
        said.append(f"{family} neighbour table limit {current[2]} -> {limits[2]} entries")
    return said


def mem_available_mib(meminfo: str) -> float:
    """MemAvailable from the text of /proc/meminfo, in MiB."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no MemAvailable in /proc/meminfo")


def fitting_nodes(available_mib: float, jobs: bool) -> int:
    """The most nodes whose lab fits in HEADROOM of AVAILABLE_MIB."""
    per_node = NODE_MIB_JOBS if jobs else NODE_MIB_NO_JOBS
    return max(0, math.floor((available_mib * HEADROOM - MASTER_MIB) / per_node))


def check_memory(need: Need, available_mib: float) -> None:
    """BrambleError, before anything is built, if the lab of NEED would not fit in memory."""
    if need.memory_mib <= available_mib * HEADROOM:
        return
    per_node = NODE_MIB_JOBS if need.jobs else NODE_MIB_NO_JOBS
    most = fitting_nodes(available_mib, need.jobs)
    hint = f"use --nodes {most} or fewer" if most else "free some memory"
    if need.jobs:
        most_without = fitting_nodes(available_mib, False)
        hint += f", or --no-jobs ({NODE_MIB_NO_JOBS:.0f} MiB a node: up to {most_without})"
    raise BrambleError(
        f"a {need.nodes}-node lab needs about {need.memory_mib / 1024:.1f} GiB "
        f"({per_node:.0f} MiB a node, measured, and {MASTER_MIB:.0f} MiB for the master), "
        f"but this machine has {available_mib / 1024:.1f} GiB available: {hint}"
    )


def check_machine(need: Need) -> None:
    """Check this machine's memory and thread limits for NEED (BrambleError if short)."""
    proc = Path("/proc")
    check_memory(need, mem_available_mib((proc / "meminfo").read_text()))
    # /proc/loadavg's fourth field: runnable/total scheduling entities (threads).
    running = int((proc / "loadavg").read_text().split()[3].partition("/")[2])
    check_threads(
        need,
        pid_max=int((proc / "sys/kernel/pid_max").read_text()),
        threads_max=int((proc / "sys/kernel/threads-max").read_text()),
        running=running,
    )


def check_threads(need: Need, *, pid_max: int, threads_max: int, running: int) -> None:
    """BrambleError if the lab's threads would not fit the kernel's pid and thread limits."""
    limit = min(pid_max, threads_max)
    want = need.nodes * NODE_THREADS + 100
    if running + want > limit:
        raise BrambleError(
            f"a {need.nodes}-node lab runs about {want} threads, but {running} of this "
            f"machine's {limit} are in use (kernel.pid_max, kernel.threads-max): use fewer "
            f"nodes or raise them with sysctl"
        )
