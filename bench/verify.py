"""Heartbeat verify cost in process: the collector's whole path for one datagram (decode, HMAC
verify, key-to-node binding, clock check, node table), no socket, on one core.

Two ways of signing the same datagrams from IDENTITIES senders: the cluster's one shared key
(as before enrollment), and each sender's own key, bound to its name on the master (as after
enrollment). Reported: CPU microseconds per datagram (the best of REPEAT runs; CPU time, so
other work on the machine moves it less than wall time would) and datagrams/s per core.

    python bench/verify.py [--datagrams 100000] [--identities 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import time

from common import SAMPLE

from bramble.master.collector import Collector
from bramble.master.nodes import NodeTable
from bramble.telemetry.encode import encode

NOW = 1_800_000_000.0


def make(count: int, identities: int, per_node: bool) -> tuple[list[bytes], dict[str, bytes]]:
    """COUNT datagrams round-robin over IDENTITIES senders, and the keys by key id."""
    shared = bytes(range(32))
    keys: dict[str, bytes] = {}
    out = []
    for i in range(count):
        node = i % identities
        if per_node:
            key = hashlib.sha256(b"node %d" % node).digest()
            key_id = "n-" + hashlib.sha256(key).hexdigest()[:16]
        else:
            key, key_id = shared, "k1"
        keys[key_id] = key
        out.append(
            encode(
                SAMPLE,
                node=f"bench-{node:03d}",
                boot=7,
                seq=1 + i // identities,
                ts=NOW,
                interval=1.0,
                key=key,
                key_id=key_id,
            )
        )
    return out, keys


def run(datagrams: list[bytes], keys: dict[str, bytes], per_node: bool) -> float:
    """Seconds to handle DATAGRAMS with a fresh collector."""
    collector = Collector(
        NodeTable(max_nodes=4096),
        threading.Lock(),
        keys=keys,
        allow_unsigned=False,
        clock_window=30.0,
        on_changes=lambda changes: None,
        clock=lambda: NOW,
    )
    if per_node:
        owners = {key_id: f"bench-{i:03d}" for i, key_id in enumerate(keys)}
        collector.use_keys(keys, owners, frozenset())
    handle = collector.handle
    begin = time.process_time()
    for data in datagrams:
        handle(data, "10.42.0.11")
    took = time.process_time() - begin
    assert collector.stats.accepted == len(datagrams), dict(collector.stats.rejected)
    collector.close()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datagrams", type=int, default=100_000)
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'keys':>10} {'us/datagram':>12} {'datagrams/s':>12}")
    for per_node in (False, True):
        datagrams, keys = make(args.datagrams, args.identities, per_node)
        best = min(run(datagrams, keys, per_node) for _ in range(args.repeat))
        label = f"{args.identities} own" if per_node else "1 shared"
        print(f"{label:>10} {best / len(datagrams) * 1e6:>12.2f} {len(datagrams) / best:>12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
