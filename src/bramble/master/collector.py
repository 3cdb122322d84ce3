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

from bramble.master.nodes import NodeTable
from bramble.master.views import Change
from bramble.master.views import Stats as StatsView
from bramble.telemetry.decode import check_clock, decode
from bramble.telemetry.wire import Rejected

log = logging.getLogger(__name__)
# about 1.5 s of datagrams at 20,000/s (each costs ~2 KB of kernel memory): room for the
# master to be descheduled on a busy machine without losing any
RCVBUF = 32 * 1024 * 1024
SO_RCVBUFFORCE = 33  # Linux; the socket module does not name it


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
        try:
            self.collector.handle(data, str(addr[0]))
        except Exception:  # a bug must not stop the receiver: count it, say it rarely
            self.collector.stats.rejected["internal"] += 1
            self.collector._log.warning(
                "internal", "datagram from %s failed", addr[0], exc_info=True
            )

    def error_received(self, exc: Exception) -> None:
        self.collector._log.warning("recv", "receive error: %s", exc)


class Collector:
    """Feeds TABLE (under LOCK) with the datagrams it receives on the event loop.

    `handle` is the whole path of one datagram, with no socket: `start` connects it to a socket
    given from outside (`open_socket`), `close` disconnects. The lock is for the API's request
    threads, which read the table.
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
    ) -> None:
        self.table = table
        self.lock = lock
        self.keys = dict(keys)
        self.allow_unsigned = allow_unsigned
        self.clock_window = clock_window
        self.on_changes = on_changes
        self.clock = clock
        self.stats = stats if stats is not None else Stats()
        self._transport: asyncio.BaseTransport | None = None
        self._log = _RateLimitedLog()
        self._names: dict[str, str] = {}
        self._resolver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bramble-rdns")

    async def start(self, sock: socket.socket) -> None:
        """Receive on SOCK (a bound UDP socket, see `open_socket`) on the running event loop;
        the collector owns it from now on."""
        loop = asyncio.get_running_loop()
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
        self._resolver.shutdown(wait=False, cancel_futures=True)

    def handle(self, data: bytes, address: str) -> None:
        """Decode, verify and apply one datagram from ADDRESS."""
        now = self.clock()
        try:
            packet = decode(
                data, self.keys, allow_unsigned=self.allow_unsigned, source=address, now=now
            )
            if packet.signed:
                check_clock(packet, now, self.clock_window)
            else:
                packet = packet._replace(node=self._legacy_name(address))
            with self.lock:
                changes = self.table.accept(packet, now, address)
        except Rejected as exc:
            self.stats.rejected[exc.reason] += 1
            self._log.warning(f"reject.{exc.reason}", "rejected datagram from %s: %s", address, exc)
            return
        self.stats.accepted += 1
        if changes:
            self.on_changes(changes)

    def _legacy_name(self, address: str) -> str:
        """The reverse-DNS name of ADDRESS once known; the address itself until then."""
        name = self._names.get(address)
        if name is None:
            self._names[address] = address
            if len(self._names) < 4096:
                self._resolver.submit(self._resolve, address)
            return address
        return name

    def _resolve(self, address: str) -> None:
        try:
            name = socket.gethostbyaddr(address)[0].split(".")[0]
        except OSError:
            return
        if name and name != address:
            with self.lock:
                self.table.rename(address, name)
            self._names[address] = name
