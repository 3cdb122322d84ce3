"""The collector: one datagram's whole path (decode, verify, clock, table) without a socket, and
on a real loopback socket."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from bramble_testing import free_port

from bramble.master.collector import Collector, open_socket
from bramble.master.nodes import NodeTable
from bramble.telemetry.encode import encode
from bramble.telemetry.wire import Sample

KEY = bytes(range(32))
SAMPLE = Sample(1500, 48.5, 0.25, (0.5, 0.4, 0.3), {"MemTotal": 1000, "MemAvailable": 400})
NOW = 1_800_000_000.0


def datagram(
    node: str = "n1", seq: int = 1, ts: float = NOW, key: bytes | None = KEY, key_id: str = "k1"
) -> bytes:
    return encode(SAMPLE, node=node, boot=7, seq=seq, ts=ts, interval=1.0, key=key, key_id=key_id)


def collector(**options: object) -> tuple[Collector, NodeTable, list[object]]:
    table = NodeTable()
    changes: list[object] = []
    settings: dict[str, object] = {
        "keys": {"k1": KEY},
        "allow_unsigned": False,
        "clock_window": 30.0,
        "on_changes": changes.extend,
        "clock": lambda: NOW,
    }
    settings.update(options)
    return Collector(table, threading.Lock(), **settings), table, changes  # type: ignore[arg-type]


def test_a_signed_datagram_reaches_the_table_and_announces_the_node() -> None:
    c, table, changes = collector()
    c.handle(datagram(), "10.42.0.11")
    assert c.stats.accepted == 1 and not c.stats.rejected
    state = table.nodes["n1"]
    assert state.address == "10.42.0.11" and state.seq == 1 and state.sample == SAMPLE
    assert [ch.kind for ch in changes] == ["new"]  # type: ignore[attr-defined]
    c.close()


def test_every_rejection_is_counted_by_reason_and_changes_nothing() -> None:
    c, table, _ = collector()
    c.handle(datagram(seq=5), "10.42.0.11")
    bad = [
        (datagram(seq=5), "replay"),
        (datagram(seq=6, key=bytes(32)), "bad_signature"),
        (datagram(seq=7, key_id="k2"), "unknown_key"),
        (datagram(seq=8, ts=NOW - 31), "clock_skew"),
        (datagram(key=None), "unsigned"),
        (b"x" * 2000, "oversize"),
    ]
    for data, _reason in bad:
        c.handle(data, "10.42.0.11")
    assert dict(c.stats.rejected) == {reason: 1 for _, reason in bad}
    assert c.stats.accepted == 1 and table.nodes["n1"].seq == 5
    c.close()


def test_unsigned_datagrams_when_allowed_are_named_by_their_source() -> None:
    c, table, _ = collector(allow_unsigned=True)
    c.handle(b'{"cpufreq":700,"cputemp":45.1,"cpuusage":0.5,"loadavg":[0,0,0],'
             b'"meminfo":{"MemTotal":448776}}\0\0', "192.0.2.9")  # fmt: skip
    assert c.stats.accepted == 1
    assert list(table.nodes) == ["192.0.2.9"] and table.nodes["192.0.2.9"].signed is False
    c.close()


def test_a_bug_behind_a_datagram_is_counted_not_raised() -> None:
    def broken(_changes: object) -> None:
        raise RuntimeError("a bug")

    c, _, _ = collector(on_changes=broken)
    protocol = c.protocol()
    protocol.datagram_received(datagram(), ("10.42.0.11", 6000))
    assert c.stats.rejected["internal"] == 1
    c.close()


def test_start_receives_on_the_socket_it_is_given() -> None:
    port = free_port(socket.SOCK_DGRAM)
    sock = open_socket("224.0.0.251", port, "127.0.0.1")
    c, table, _ = collector(clock=time.time)

    async def run() -> None:
        await c.start(sock)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            tx.sendto(datagram(ts=time.time()), ("224.0.0.251", port))
        deadline = time.monotonic() + 5
        while not table.nodes and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        c.close()

    asyncio.run(run())
    assert list(table.nodes) == ["n1"] and table.nodes["n1"].address == "127.0.0.1"
    assert sock.fileno() == -1  # closed with the collector


def test_per_node_keys_are_bound_to_their_node() -> None:
    """A node's own key signs for that node only; once a node has its own key, the shared
    key no longer speaks for it; a revoked key is refused as such."""
    key_a, key_b = bytes([1]) * 32, bytes([2]) * 32
    c, table, _ = collector()
    c.use_keys(
        {"k1": KEY, "n-a": key_a, "n-b": key_b}, {"n-a": "a", "n-b": "b"}, frozenset({"n-b"})
    )
    c.handle(datagram("a", seq=1, key=key_a, key_id="n-a"), "10.42.0.11")
    c.handle(datagram("b", seq=1, key=key_a, key_id="n-a"), "10.42.0.11")  # A forges B
    c.handle(datagram("a", seq=2, key=KEY, key_id="k1"), "10.42.0.13")  # shared key for A
    c.handle(datagram("c", seq=1, key=KEY, key_id="k1"), "10.42.0.13")  # not enrolled yet
    c.handle(datagram("b", seq=2, key=key_b, key_id="n-b"), "10.42.0.12")  # B, revoked
    assert dict(c.stats.rejected) == {"wrong_node": 2, "revoked": 1}
    assert sorted(table.nodes) == ["a", "c"] and c.stats.accepted == 2
    c.close()
