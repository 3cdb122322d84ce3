"""The node table: latest sample, liveness, and change events. Pure: time is passed in.

A node is `up` while datagrams arrive, `stale` after `stale_after` missed intervals and `down`
after `down_after`. A new boot id is a `rebooted` event. The table holds at most `max_nodes`
nodes; a new node past that evicts the longest-down node, or is turned away.

What a key holder cannot do: add a node the policy does not admit (`admit`: the spec's names,
or None for any), claim an interval longer than `max_interval` (so as to stay `up` for hours
without sending), replay a datagram older than the last accepted before a restart (`remember`),
or, unsigned, change a node that has sent a signed datagram.
"""

from __future__ import annotations

from typing import Literal

from bramble.master.views import (
    Change,
    FilesystemView,
    NodeView,
    ProcessesView,
    SampleView,
    Status,
)
from bramble.telemetry.metrics import RATES, values
from bramble.telemetry.wire import Packet, Proc, ProcsPacket, Rejected, Sample

UP: Literal["up"] = "up"
STALE: Literal["stale"] = "stale"
DOWN: Literal["down"] = "down"
KEEP_WINDOWS = 4096


class NodeState:
    """What the master knows of one node."""

    __slots__ = (
        "address",
        "boot",
        "counters",
        "first_seen",
        "interval",
        "last_seen",
        "last_ts",
        "name",
        "net_rx",
        "net_totals",
        "net_tx",
        "procs",
        "procs_ts",
        "rates",
        "rebooted_at",
        "sample",
        "seq",
        "signed",
        "status",
    )

    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.address = ""
        self.first_seen = now
        self.last_seen = now
        self.last_ts = 0.0
        self.boot = 0
        self.seq = 0
        self.interval = 1.0
        self.signed = False
        self.sample: Sample | None = None
        self.rebooted_at: float | None = None
        self.status: Status = UP
        self.net_totals: tuple[int, int] | None = None
        self.net_rx = 0.0
        self.net_tx = 0.0
        self.counters: tuple[int | None, ...] | None = None
        """The last disk read, written, swap in, out counters (those it reports, in RATES
        order; None across a reboot)."""
        self.rates: dict[str, float] = {}
        """disk_read, disk_write, swap_in, swap_out: those its last two samples had."""
        self.procs: tuple[Proc, ...] = ()
        self.procs_ts: float | None = None
        """Its latest process datagram's rows and clock (None: none in this boot yet)."""


def _counters(sample: Sample) -> tuple[int | None, ...]:
    """A sample's counters behind RATES: disk bytes read, written, swap pages in, out."""
    diskio, swap = sample.diskio, sample.swap
    return (
        *((None, None) if diskio is None else diskio),
        *((None, None) if swap is None else swap),
    )


def sample_view(sample: Sample, ts: float) -> SampleView:
    """A sample as the API shows it, stamped with the sender's clock TS."""
    return {
        "cpufreq": sample.cpufreq,
        "cputemp": sample.cputemp,
        "cpuusage": sample.cpuusage,
        "loadavg": sample.loadavg,
        "meminfo": sample.meminfo,
        "cores": list(sample.cores),
        "disk": sample.disk,
        "net": sample.net,
        "uptime": sample.uptime,
        "ts": ts,
        "model": sample.model,
        "throttled": sample.throttled,
        "swap": sample.swap,
        "diskio": sample.diskio,
        "fs": sample.fs,
    }


def filesystems(sample: Sample) -> list[FilesystemView]:
    """A sample's real filesystems, each with its use in per cent."""
    return [
        {
            "mount": mount,
            "total": total,
            "used": used,
            "free": free,
            "used_percent": round(100.0 * used / total, 1) if total > 0 else 0.0,
        }
        for mount, (total, used, free) in sample.fs.items()
    ]


def _check_newer(packet: Packet, boot: int, seq: int, ts: float) -> None:
    """Rejected("replay") unless PACKET is newer than the window (BOOT, SEQ, TS)."""
    if packet.boot == boot:
        if packet.seq <= seq:
            raise Rejected("replay", f"seq {packet.seq} after {seq}")
    elif not (packet.boot > boot or packet.ts > ts):
        raise Rejected("replay", f"boot {packet.boot} before {boot}")


class NodeTable:
    """Every node the master has heard from, with liveness decided from the time given."""

    def __init__(
        self,
        *,
        stale_after: float = 3,
        down_after: float = 10,
        max_nodes: int = 1024,
        default_interval: float = 1.0,
        admit: frozenset[str] | None = None,
        max_interval: float | None = None,
    ) -> None:
        self.stale_after = stale_after
        self.down_after = down_after
        self.max_nodes = max_nodes
        self.default_interval = default_interval
        self.admit = admit
        self.max_interval = max_interval or max(10 * default_interval, 2.0)
        self._none_down_until = 0.0
        """No node is down until then (a lower bound), found when the table was full."""
        self.nodes: dict[str, NodeState] = {}
        self.dirty: set[str] = set()
        # Nodes a previous run of the master knew, with their last change: seen again, they
        # are not `new`, and one last seen stale or down is `up` again.
        self.known: dict[str, str] = {}
        self.windows: dict[str, tuple[int, int, float]] = {}
        """The last (boot, seq, ts) accepted from nodes not in the table (since a restart)."""

    def remember(self, windows: dict[str, tuple[int, int, float]]) -> None:
        """Replay windows saved before a restart: a node's first datagram must be newer."""
        self.windows.update(windows)

    def window(self, name: str) -> tuple[int, int, float] | None:
        """NAME's newest (boot, seq, ts) accepted, or None."""
        state = self.nodes.get(name)
        if state is not None and state.signed:
            return state.boot, state.seq, state.last_ts
        return self.windows.get(name)

    def status_at(self, node: NodeState, now: float) -> Status:
        """UP, STALE or DOWN for NODE at NOW."""
        missed = (now - node.last_seen) / node.interval
        if missed > self.down_after:
            return DOWN
        if missed > self.stale_after:
            return STALE
        return UP

    def _admit(self, name: str, now: float) -> NodeState:
        if self.admit is not None and name not in self.admit:
            raise Rejected("unknown_node", f"{name!r} is not in the spec")
        if len(self.nodes) >= self.max_nodes:
            # A flood of new names at a full table must cost each datagram O(1), not a scan:
            # once a scan finds no node down, none can be before the earliest time one could.
            if now <= self._none_down_until:
                raise Rejected("too_many_nodes", f"already tracking {self.max_nodes} nodes")
            down = [n for n in self.nodes.values() if self.status_at(n, now) == DOWN]
            if not down:
                self._none_down_until = min(
                    n.last_seen + self.down_after * n.interval for n in self.nodes.values()
                )
                raise Rejected("too_many_nodes", f"already tracking {self.max_nodes} nodes")
            oldest = min(down, key=lambda n: n.last_seen)
            self.forget(oldest.name)
        self._none_down_until = 0.0  # the new node may go down before the others
        state = self.nodes[name] = NodeState(name, now)
        return state

    def accept(self, packet: Packet, now: float, address: str = "") -> list[Change]:
        """Take a verified PACKET received at NOW from ADDRESS; return what changed.

        Raises Rejected("replay") for a datagram not newer than the last one of its node,
        Rejected("unknown_node") for a node the policy does not admit, Rejected("name_taken")
        for an unsigned datagram in the name of a node that signs, and
        Rejected("too_many_nodes") when the table is full of live nodes.
        """
        changes: list[Change] = []
        state = self.nodes.get(packet.node)
        if state is None:
            saved = self.windows.get(packet.node)
            if saved is not None and packet.signed:
                _check_newer(packet, *saved)
            elif saved is not None:
                raise Rejected("name_taken", f"{packet.node} signs its datagrams")
            state = self._admit(packet.node, now)
            self.windows.pop(packet.node, None)
            state.boot, state.seq = packet.boot, packet.seq
            last = self.known.pop(packet.node, None)
            if last is None:
                changes.append(
                    Change(
                        ts=now,
                        node=packet.node,
                        kind="new",
                        message=f"{packet.node} joined ({address})",
                    )
                )
            elif last in (STALE, DOWN):
                changes.append(
                    Change(ts=now, node=packet.node, kind=UP, message=f"{packet.node} is up again")
                )
        elif not packet.signed and state.signed:
            raise Rejected("name_taken", f"{packet.node} signs its datagrams")
        elif packet.signed:
            if packet.boot == state.boot:
                if packet.seq <= state.seq:
                    raise Rejected("replay", f"seq {packet.seq} after {state.seq}")
            elif packet.boot > state.boot or packet.ts > state.last_ts:
                # A new boot id, or an older one with a later clock (a board without a
                # real-time clock): the node restarted.
                state.rebooted_at = now
                state.net_totals = None
                state.counters = None
                state.procs, state.procs_ts = (), None  # the processes of the last boot
                changes.append(
                    Change(
                        ts=now, node=packet.node, kind="rebooted", message=f"{packet.node} rebooted"
                    )
                )
            else:
                raise Rejected("replay", f"boot {packet.boot} before {state.boot}")
        if state.status != UP:
            changes.append(
                Change(ts=now, node=packet.node, kind=UP, message=f"{packet.node} is up again")
            )
            state.status = UP
        self._update(state, packet, now, address)
        return changes

    def _update(self, state: NodeState, packet: Packet, now: float, address: str) -> None:
        sample = packet.sample
        rx = tx = 0
        for r, t in sample.net.values():
            rx += r
            tx += t
        if state.net_totals is not None and packet.ts > state.last_ts:
            dt = packet.ts - state.last_ts
            d_rx, d_tx = rx - state.net_totals[0], tx - state.net_totals[1]
            state.net_rx = d_rx / dt if d_rx >= 0 else 0.0
            state.net_tx = d_tx / dt if d_tx >= 0 else 0.0
        state.net_totals = (rx, tx)
        counters = _counters(sample)
        if state.counters is not None and packet.ts > state.last_ts:
            dt = packet.ts - state.last_ts
            state.rates = {
                name: max(after - before, 0) / dt
                for name, before, after in zip(RATES, state.counters, counters, strict=True)
                if before is not None and after is not None
            }
        elif state.counters is None:
            state.rates = {}
        state.counters = counters
        state.boot = packet.boot
        state.seq = packet.seq
        state.last_ts = packet.ts
        state.last_seen = now
        interval = min(packet.interval or self.default_interval, self.max_interval)
        if interval < state.interval:  # it may go down sooner than _admit last worked out
            self._none_down_until = 0.0
        state.interval = interval
        state.signed = packet.signed
        state.sample = sample
        if address:
            state.address = address
        self.dirty.add(state.name)

    def accept_procs(self, packet: ProcsPacket) -> None:
        """Take a verified process datagram: NODE's latest processes (no history kept).

        Raises Rejected("unknown_node") for a node with no signed sample yet (its sample,
        sent first, was lost) and Rejected("replay") unless it is newer than the node's last
        datagram in the same boot.
        """
        state = self.nodes.get(packet.node)
        if state is None or not state.signed:
            raise Rejected("unknown_node", f"processes of {packet.node!r} before its samples")
        if packet.boot != state.boot or packet.seq <= state.seq:
            raise Rejected("replay", f"processes of boot {packet.boot} seq {packet.seq}")
        state.seq = packet.seq
        state.procs, state.procs_ts = packet.procs, packet.ts

    def processes(self, name: str) -> ProcessesView | None:
        """NAME's latest processes, or None for a node not in the table."""
        state = self.nodes.get(name)
        if state is None:
            return None
        return {
            "ts": state.procs_ts,
            "processes": [
                {"name": p.name, "pid": p.pid, "cpu": p.cpu, "rss": p.rss} for p in state.procs
            ],
        }

    def forget(self, name: str) -> None:
        """Drop NAME from the table, keeping its replay window."""
        state = self.nodes.pop(name, None)
        if state is not None and state.signed:
            self.windows[name] = (state.boot, state.seq, state.last_ts)
            if len(self.windows) > KEEP_WINDOWS:  # a flood of names: keep the newest
                oldest = sorted(self.windows, key=lambda n: self.windows[n][2])
                for gone in oldest[: len(self.windows) - KEEP_WINDOWS]:
                    del self.windows[gone]
        self.dirty.discard(name)

    def tick(self, now: float) -> list[Change]:
        """Status changes (stale, down) that the passing of time has caused by NOW."""
        changes = []
        for state in self.nodes.values():
            status = self.status_at(state, now)
            if status != state.status:
                state.status = status
                what = "stopped reporting" if status == STALE else "is down"
                changes.append(
                    Change(ts=now, node=state.name, kind=status, message=f"{state.name} {what}")
                )
                self.dirty.add(state.name)
        return changes

    def drain_dirty(self) -> list[str]:
        """Names of the nodes changed since the last call."""
        names = sorted(self.dirty)
        self.dirty.clear()
        return names

    def view(self, name: str, now: float) -> NodeView | None:
        """The API's view of NAME, or None."""
        state = self.nodes.get(name)
        return None if state is None else self._view(state, now)

    def views(self, now: float, names: list[str] | None = None) -> list[NodeView]:
        """Views of NAMES (default: all), sorted by name."""
        chosen = sorted(self.nodes) if names is None else names
        return [self._view(self.nodes[n], now) for n in chosen if n in self.nodes]

    def counts(self, now: float) -> dict[str, int]:
        """How many nodes are up, stale and down."""
        out = {UP: 0, STALE: 0, DOWN: 0}
        for state in self.nodes.values():
            out[self.status_at(state, now)] += 1
        return out

    def _view(self, state: NodeState, now: float) -> NodeView:
        sample = state.sample
        rx, tx = round(state.net_rx, 1), round(state.net_tx, 1)
        rates = {name: round(rate, 1) for name, rate in state.rates.items()}
        return {
            "name": state.name,
            "address": state.address,
            "status": self.status_at(state, now),
            "first_seen": state.first_seen,
            "last_seen": state.last_seen,
            "boot": state.boot,
            "seq": state.seq,
            "rebooted_at": state.rebooted_at,
            "interval": state.interval,
            "signed": state.signed,
            "sample": sample_view(sample, state.last_ts) if sample else None,
            "rates": {"net_rx": rx, "net_tx": tx, **rates},  # type: ignore[typeddict-item]
            "metrics": values(sample, rx, tx, rates) if sample else {},
        }
