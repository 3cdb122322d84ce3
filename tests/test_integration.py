"""Real `bramble agent` processes to a real `bramble master` over loopback multicast."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from bramble_testing import Processes, api, wait_for, write_spec

from bramble.spec import load_spec

pytestmark = [__import__("pytest").mark.slow]


def statuses(base: str) -> dict[str, str]:
    return {n["name"]: n["status"] for n in api(base, "/api/nodes")}


def test_agents_to_master_liveness_reboot_and_history(tmp_path: Path, processes: Processes) -> None:
    interval, stale_after, down_after = 0.2, 3, 8
    spec_path = write_spec(
        tmp_path / "cluster", interval=interval, stale_after=stale_after, down_after=down_after
    )
    spec = load_spec(spec_path)
    base = f"http://127.0.0.1:{spec.dashboard.port}"
    processes.start("master", "master", "--spec", str(spec_path))
    for i in (1, 2, 3):
        processes.start(f"node-{i}", "agent", "--spec", str(spec_path), "--node-name", f"node-{i}")

    wait_for(
        lambda: statuses(base) == {"node-1": "up", "node-2": "up", "node-3": "up"},
        20,
        "three nodes up",
    )
    node = api(base, "/api/nodes/node-2")
    assert node["address"] == "127.0.0.1" and node["signed"] is True
    assert 0 <= node["sample"]["cpuusage"] <= 1 and node["sample"]["meminfo"]["MemTotal"] > 0

    # stop one: stale after 3 intervals, down after 8 (plus the 0.5 s tick of the master)
    assert processes.stop("node-2") == 0
    wait_for(lambda: statuses(base)["node-2"] == "stale", 5, "node-2 stale")
    became_stale = time.time() - api(base, "/api/nodes/node-2")["last_seen"]
    wait_for(lambda: statuses(base)["node-2"] == "down", 5, "node-2 down")
    became_down = time.time() - api(base, "/api/nodes/node-2")["last_seen"]
    # measured from the last datagram the master took; lower bounds are exact, upper bounds
    # allow the master's 0.5 s tick and a loaded machine
    assert stale_after * interval <= became_stale <= stale_after * interval + 2.5
    assert down_after * interval <= became_down <= down_after * interval + 2.5
    assert statuses(base)["node-1"] == "up"

    # restart as after a reboot (a new boot id): back up, with a `rebooted` event
    processes.start(
        "node-2", "agent", "--spec", str(spec_path), "--node-name", "node-2",
        "--boot-id", str(int(time.time())),
    )  # fmt: skip
    wait_for(lambda: statuses(base)["node-2"] == "up", 10, "node-2 up again")
    # the change log is written to SQLite within a second: wait for the reboot to reach it
    kinds = wait_for(
        lambda: (
            (k := [c["kind"] for c in api(base, "/api/changes") if c["node"] == "node-2"])
            and "rebooted" in k
            and k
        ),
        5,
        "the rebooted event in /api/changes",
    )
    assert "down" in kinds and "stale" in kinds

    # an agent restarted within the same boot is not a reboot, and not a replay either
    processes.stop("node-3")
    processes.start("node-3", "agent", "--spec", str(spec_path), "--node-name", "node-3")
    time.sleep(1.5)
    node3 = api(base, "/api/nodes/node-3")
    assert node3["status"] == "up" and node3["rebooted_at"] is None
    assert api(base, "/api/stats")["rejected"].get("replay", 0) == 0

    history = api(base, "/api/nodes/node-1/history?metric=cpuusage&since=-120")
    assert len(history["points"]) >= 2

    # restart the master: the history is still there, and nodes come back up
    assert processes.stop("master") == 0
    processes.start("master", "master", "--spec", str(spec_path))
    wait_for(lambda: statuses(base).get("node-1") == "up", 15, "node-1 up after master restart")
    again = api(base, "/api/nodes/node-1/history?metric=cpuusage&since=-120")
    assert len(again["points"]) >= len(history["points"])
    assert again["points"][0] == history["points"][0]
    assert any(c["kind"] == "rebooted" for c in api(base, "/api/changes"))


def test_master_counts_rejections_and_keeps_running(tmp_path: Path, processes: Processes) -> None:
    import socket

    spec_path = write_spec(tmp_path / "cluster")
    spec = load_spec(spec_path)
    base = f"http://127.0.0.1:{spec.dashboard.port}"
    processes.start("master", "master", "--spec", str(spec_path))
    wait_for(lambda: api(base, "/api/stats") is not None, 15, "the master")
    target = (str(spec.telemetry.group), spec.telemetry.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        for bad in (b"\xff\xfe", b"{not json", b"[]", b"x" * 2000, b'{"cpufreq":1}'):
            sock.sendto(bad, target)
    stats = wait_for(
        lambda: (s := api(base, "/api/stats")) and sum(s["rejected"].values()) >= 5 and s,
        5,
        "5 rejections",
    )
    assert stats["accepted"] == 0
    assert set(stats["rejected"]) >= {"unsigned", "oversize"}
    metrics = __import__("httpx").get(base + "/metrics").text
    assert 'bramble_datagrams_rejected_total{reason="unsigned"}' in metrics
    assert processes.procs["master"].poll() is None
    assert processes.stop("master", signal.SIGINT) == 0
