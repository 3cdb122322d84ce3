"""The master's HTTP API, over httpx, against a real `bramble master` on ephemeral ports."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from bramble_testing import Processes, api, wait_for, write_spec

from bramble.spec import load_secrets, load_spec
from bramble.telemetry.encode import encode
from bramble.telemetry.metrics import BY_NAME, EXPORTED
from bramble.telemetry.wire import Sample

pytestmark = [pytest.mark.slow]

SAMPLE = Sample(
    1500,
    48.5,
    0.4,
    (0.5, 0.4, 0.3),
    {"MemTotal": 1000, "MemAvailable": 250, "MemFree": 100, "SwapTotal": 0, "SwapFree": 0},
    cores=(0.3, 0.5),
    disk={"total": 100, "used": 40, "free": 60},
    net={"eth0": (1000, 2000), "lo": (5, 5)},
    uptime=10.0,
)


def test_every_route_of_the_contract(tmp_path: Path, processes: Processes) -> None:
    # a node the spec does not name: admitted because the spec says any may join
    spec_path = write_spec(
        tmp_path / "cluster", interval=0.5, tables={"telemetry": 'admit = "any"'}
    )
    spec = load_spec(spec_path)
    secrets = load_secrets(spec_path)
    base = f"http://127.0.0.1:{spec.dashboard.port}"
    processes.start("master", "master", "--spec", str(spec_path))
    wait_for(lambda: api(base, "/api/stats"), 30, "the master's API")

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    target = (str(spec.telemetry.group), spec.telemetry.port)
    boot, start = 1_700_000_000, time.time()
    for seq in range(1, 11):
        net = {"eth0": (1000 + seq * 200, 2000 + seq * 100), "lo": (5, 5)}
        data = encode(
            # a Raspberry Pi that reports every signal: its disk reads 512 B per 0.2 s
            SAMPLE._replace(
                net=net,
                model="Raspberry Pi 4 Model B Rev 1.4",
                throttled=0x50005,
                swap=(7, 7),
                diskio=(512 * seq, 0),
                fs={"/": (100, 40, 60), "/boot/firmware": (50, 5, 45)},
            ),
            node="api-1",
            boot=boot,
            seq=seq,
            ts=start + seq * 0.2,
            interval=5.0,  # a long interval: the node stays up while the test reads
            key=secrets.telemetry_key,
            key_id=secrets.telemetry_key_id,
        )
        sock.sendto(data, target)
        time.sleep(0.2)
    sock.sendto(b"not json at all", target)  # unsigned: refused before parsing
    sock.sendto(data, target)  # the last one again: a replay
    sock.close()

    nodes = wait_for(lambda: api(base, "/api/nodes"), 10, "a node")
    assert [n["name"] for n in nodes] == ["api-1"]
    node = api(base, "/api/nodes/api-1")
    assert set(node) >= {
        "name", "address", "status", "first_seen", "last_seen", "boot", "seq", "rebooted_at",
        "interval", "signed", "sample", "rates",
    }  # fmt: skip
    assert node["status"] == "up" and node["interval"] == 5.0
    assert node["boot"] == boot and node["seq"] == 10
    assert node["signed"] is True and node["address"] == "127.0.0.1"
    assert node["sample"]["cores"] == [0.3, 0.5] and node["sample"]["meminfo"]["MemTotal"] == 1000
    # 200 B and 100 B more per 0.2 s interval, lo left out
    assert node["rates"]["net_rx"] == pytest.approx(1000, rel=0.05)
    assert node["rates"]["net_tx"] == pytest.approx(500, rel=0.05)
    # every metric of the registry, computed on the master: memory used = 1000 - 250 kB
    assert set(node["metrics"]) == set(BY_NAME)
    assert node["metrics"]["mem_used"] == 750 and node["metrics"]["load5"] == 0.4
    assert node["metrics"]["net_rx"] == node["rates"]["net_rx"]
    assert node["rates"]["disk_read"] == pytest.approx(2560, rel=0.05)
    assert node["metrics"]["undervoltage"] == 1 and node["metrics"]["fs_used_percent_max"] == 40
    assert node["sample"]["model"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert node["sample"]["throttled"] == 0x50005 and node["sample"]["swap"] == [7, 7]
    assert node["sample"]["fs"] == {"/": [100, 40, 60], "/boot/firmware": [50, 5, 45]}

    missing = httpx.get(f"{base}/api/nodes/nope", timeout=5)
    assert missing.status_code == 404 and "detail" in missing.json()
    # what a page may ask this master: every /api/ path, sorted (the pages and /docs not)
    routes = api(base, "/api/routes")
    assert {"/api/nodes/{name}/history", "/api/registry", "/api/routes"} <= set(routes)
    assert routes == sorted(routes) and all(r.startswith("/api/") for r in routes)

    stats = wait_for(
        lambda: (s := api(base, "/api/stats"))["rejected"].get("replay") and s, 5, "rejections"
    )
    assert stats["accepted"] == 10 and stats["nodes"] == 1
    assert stats["rejected"]["unsigned"] == 1 and stats["rejected"]["replay"] == 1

    changes = api(base, "/api/changes?limit=10")
    assert [(c["node"], c["kind"]) for c in changes] == [("api-1", "new")]

    # history is written about once a second
    def history() -> dict[str, object] | None:
        got = api(base, "/api/nodes/api-1/history?metric=cpuusage,mem_used,core.1&since=-60&step=1")
        return got if got["series"]["cpuusage"] else None

    got = wait_for(history, 10, "history rows")
    assert got["node"] == "api-1" and got["step"] >= 1
    assert got["series"]["mem_used"][0][1] == 750 and got["series"]["core.1"][0][1] == 0.5
    single = api(base, "/api/nodes/api-1/history?metric=cpuusage&since=-60")
    assert single["metric"] == "cpuusage" and single["points"][0][1] == 0.4
    cluster = api(base, "/api/cluster/history?metric=mem_total&since=-60&step=1")
    assert cluster["metric"] == "mem_total" and cluster["points"][0][1] == 1000
    bad = httpx.get(f"{base}/api/nodes/api-1/history?metric=bogus", timeout=5)
    assert 400 <= bad.status_code < 500

    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert 'node="api-1"' in metrics and "bramble_datagrams_accepted" in metrics
    for metric in EXPORTED:  # every exported metric of the registry, per node
        assert f'bramble_node_{metric.prometheus}{{node="api-1"}}' in metrics
    assert 'bramble_node_info{model="Raspberry Pi 4 Model B Rev 1.4",node="api-1"} 1.0' in metrics
    assert 'bramble_node_filesystem_used_bytes{mountpoint="/boot/firmware",node="api-1"} 5.0' in (
        metrics
    )
    assert httpx.get(f"{base}/docs", timeout=5).status_code == 200
    assert httpx.get(f"{base}/", timeout=5).status_code == 200

    # the event stream: retry first, then a snapshot with the node
    with httpx.stream("GET", f"{base}/api/events", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        first: list[str] = []
        for line in stream.iter_lines():
            first.append(line)
            if line.startswith("data:") or len(first) > 10:
                break
    assert first[0].startswith("retry:")
    assert [line for line in first if line.startswith("event:")] == ["event: snapshot"]
    snapshot = json.loads(first[-1][5:])
    assert [n["name"] for n in snapshot["nodes"]] == ["api-1"] and "stats" in snapshot
    assert snapshot["changes"][0]["kind"] == "new"
