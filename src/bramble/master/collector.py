"""The UDP receiver: datagrams in, verified packets into the node table.

It runs on the master's event loop as a datagram protocol (uvloop's, in C, where installed).
A receive thread would compete with the loop for the interpreter lock on every datagram and
every viewer's socket write, which turns into seconds of event-stream delay under load.
Nothing a sender does can stop it: every rejection is counted by reason, and anything
unexpected is counted as `internal` and logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bramble.master.health import Health
from bramble.master.nodes import NodeState, NodeTable
from bramble.master.views import Change
from bramble.master.views import Stats as StatsView
from bramble.telemetry.decode import check_clock, decode_datagram
from bramble.telemetry.wire import Packet, ProcsPacket, Rejected

log = logging.getLogger(__name__)
# about 1.5 s of datagrams at 20,000/s (each costs ~2 KB of kernel memory): room for the
# master to be descheduled on a busy machine without losing any
RCVBUF = 32 * 1024 * 1024
SO_RCVBUFFORCE = 33  # Linux; the socket module does not name it
WAIT_AT_MOST = 16  # datagrams of one unsigned sender kept while its name is looked up


class Stats:
    """Datagrams accepted and rejected by reason, and the recent acceptance rate."""

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.started = time.time()
        self._window: deque[tuple[float, int]] = deque(maxlen=12)

    def mark(self, now: float) -> None:
        """Remember the accepted count at NOW (called about once a second)."""
        self._window.append((now, self.accepted))

    def rate(self) -> float:
        """Accepted datagrams per second over the last ten seconds or so."""
        if len(self._window) < 2:
            return 0.0
        (t0, a0), (t1, a1) = self._window[0], self._window[-1]
        return (a1 - a0) / (t1 - t0) if t1 > t0 else 0.0

    def view(self, nodes: int) -> StatsView:
        """The API's view of these counts, with NODES the size of the node table."""
        return StatsView(
            accepted=self.accepted,
            rejected=dict(self.rejected),
            rate=round(self.rate(), 1),
            nodes=nodes,
            started=self.started,
            now=time.time(),
        )


class _RateLimitedLog:
    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.last: dict[str, float] = {}

    def warning(self, key: str, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self.last.get(key, -self.every) >= self.every:
            self.last[key] = now
            log.warning(message, *args, exc_info=exc_info)


def open_socket(group: str, port: int, interface: str) -> socket.socket:
    """A UDP socket bound to PORT and joined to GROUP on INTERFACE (an address, or any)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:  # past net.core.rmem_max needs root (CAP_NET_ADMIN); otherwise take what is allowed
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.bind(("", port))
    local = socket.inet_aton(interface) if interface else struct.pack("!I", socket.INADDR_ANY)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + local)
    sock.setblocking(False)
    return sock


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        collector = self.collector
        try:
            collector.handle(data, str(addr[0]))
        except Exception as exc:  # a bug must not stop the receiver: count it, say it rarely
            collector.stats.rejected["internal"] += 1
            if collector.health is not None:
                collector.health.failed("collector", exc)
            else:
                collector._log.warning(
                    "internal", "datagram from %s failed", addr[0], exc_info=True
                )

    def error_received(self, exc: Exception) -> None:
        self.collector._log.warning("recv", "receive error: %s", exc)


def reverse_name(address: str) -> str:
    """The host name of ADDRESS by reverse lookup (its first label), or the address itself."""
    try:
        name = socket.gethostbyaddr(address)[0].split(".")[0]
    except (OSError, UnicodeError):
        return address
    return name or address


class Collector:
    """Feeds TABLE (under LOCK) with the datagrams it receives on the event loop.

    `handle` is the whole path of one datagram, with no socket: `start` connects it to a socket
    given from outside (`open_socket`), `close` disconnects. The lock is for the API's request
    threads, which read the table.

    An unsigned (legacy) sender is named once, at its first datagram: by the reverse lookup of
    its address (or the address, when there is no name), looked up off the event loop while
    the datagram waits; the name never changes after. ON_SAMPLE hears of every node that took
    a sample (history keeps each one).
    """

    def __init__(
        self,
        table: NodeTable,
        lock: threading.Lock,
        *,
        keys: Mapping[str, bytes],
        allow_unsigned: bool,
        clock_window: float,
        on_changes: Callable[[list[Change]], None],
        clock: Callable[[], float] = time.time,
        stats: Stats | None = None,
        health: Health | None = None,
        on_sample: Callable[[NodeState], None] | None = None,
        resolve: Callable[[str], str] = reverse_name,
    ) -> None:
        self.table = table
        self.lock = lock
        self.keys = dict(keys)
        self.owners: dict[str, str] = {}
        self.bound: frozenset[str] = frozenset()
        self.revoked: frozenset[str] = frozenset()
        self.allow_unsigned = allow_unsigned
        self.clock_window = clock_window
        self.on_changes = on_changes
        self.clock = clock
        self.stats = stats if stats is not None else Stats()
        self.health = health
        self.on_sample = on_sample
        self.resolve = resolve
        self._transport: asyncio.BaseTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log = _RateLimitedLog()
        self._names: dict[str, str] = {}
        self._waiting: dict[str, list[Packet]] = {}  # datagrams of senders being named
        self._resolver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bramble-rdns")

    async def start(self, sock: socket.socket) -> None:
        """Receive on SOCK (a bound UDP socket, see `open_socket`) on the running event loop;
        the collector owns it from now on."""
        loop = self._loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.create_datagram_endpoint(self.protocol, sock=sock)
        except BaseException:
            sock.close()
            raise

    def protocol(self) -> asyncio.DatagramProtocol:
        """The event loop's side of the socket: each datagram to `handle`, every failure counted."""
        return _Protocol(self)

    def close(self) -> None:
        """Stop receiving and close the socket; pending name lookups are dropped."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._loop = None
        self._resolver.shutdown(wait=False, cancel_futures=True)

    def use_keys(
        self, keys: Mapping[str, bytes], owners: Mapping[str, str], revoked: frozenset[str]
    ) -> None:
        """Verify with KEYS from now on (on the event loop). OWNERS binds each node's own key
        id to its node: a datagram signed with it in another node's name, or signed with a
        key bound to no node (the cluster's shared key) in a name that has its own, is
        refused as `wrong_node`. A key id in REVOKED (its key still among KEYS, so a forger
        is told from the revoked node) is refused as `revoked`."""
        self.keys = dict(keys)
        self.owners = dict(owners)
        self.bound = frozenset(owners.values())
        self.revoked = revoked

    def handle(self, data: bytes, address: str) -> None:
        """Decode, verify and apply one datagram from ADDRESS."""
        now = self.clock()
        try:
            packet = decode_datagram(
                data, self.keys, allow_unsigned=self.allow_unsigned, source=address, now=now
            )
            if type(packet) is ProcsPacket:  # always signed
                if self.owners or self.revoked:
                    self._check_owner(packet)
                check_clock(packet, now, self.clock_window)
                self._apply_procs(packet, address)
                return
            assert type(packet) is Packet
            if packet.signed:
                if self.owners or self.revoked:
                    self._check_owner(packet)
                check_clock(packet, now, self.clock_window)
            else:
                name = self._legacy_name(address, packet)
                if name is None:
                    return  # applied once its sender is named
                packet = packet._replace(node=name)
        except Rejected as exc:
            self._reject(exc, address)
            return
        self._apply(packet, now, address)

    def _apply_procs(self, packet: ProcsPacket, address: str) -> None:
        try:
            with self.lock:
                self.table.accept_procs(packet)
        except Rejected as exc:
            self._reject(exc, address)
            return
        self.stats.accepted += 1

    def _check_owner(self, packet: Packet | ProcsPacket) -> None:
        key_id = packet.key_id or ""
        if key_id in self.revoked:
            raise Rejected("revoked", f"key {key_id} was revoked")
        owner = self.owners.get(key_id)
        if owner is None:
            if packet.node in self.bound:
                raise Rejected("wrong_node", f"{packet.node} has its own key, not {key_id}")
        elif owner != packet.node:
            raise Rejected("wrong_node", f"key {key_id} is {owner}'s, not {packet.node}'s")

    def _apply(self, packet: Packet, now: float, address: str) -> None:
        try:
            with self.lock:
                changes = self.table.accept(packet, now, address)
                state = self.table.nodes[packet.node]
        except Rejected as exc:
            self._reject(exc, address)
            return
        self.stats.accepted += 1
        if self.on_sample is not None:
            self.on_sample(state)
        if changes:
            self.on_changes(changes)

    def _reject(self, exc: Rejected, address: str) -> None:
        self.stats.rejected[exc.reason] += 1
        self._log.warning(f"reject.{exc.reason}", "rejected datagram from %s: %s", address, exc)

    def _legacy_name(self, address: str, packet: Packet) -> str | None:
        """The name of the unsigned sender at ADDRESS; None while it is being looked up (its
        datagram waits, and is applied when the name is known)."""
        name = self._names.get(address)
        if name is not None:
            return name
        if len(self._names) >= 4096:  # a flood of addresses: no more lookups
            return address
        if self._loop is None:  # not receiving (a direct call): look it up now
            name = self._names[address] = self.resolve(address)
            return name
        waiting = self._waiting.get(address)
        if waiting is None:
            waiting = self._waiting[address] = []
            self._resolver.submit(self._lookup, address, self._loop)
        if len(waiting) < WAIT_AT_MOST:
            waiting.append(packet)
        else:
            self.stats.rejected["unnamed"] += 1  # its name takes too long to look up
        return None

    def _lookup(self, address: str, loop: asyncio.AbstractEventLoop) -> None:
        name = self.resolve(address)
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(self._named, address, name)

    def _named(self, address: str, name: str) -> None:
        self._names[address] = name
        for packet in self._waiting.pop(address, []):
            self._apply(packet._replace(node=name), self.clock(), address)
