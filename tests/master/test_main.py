"""The master assembled in one place: its lifespan starts every part in order and closes every
part in reverse, also when one fails to start; /openapi.json describes every response."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest
from bramble_testing import write_spec

from bramble.cluster import load_cluster
from bramble.master.history import decode_rows
from bramble.master.main import Master
from bramble.telemetry.encode import encode
from bramble.telemetry.wire import Sample

SAMPLE = Sample(1500, 48.5, 0.25, (0.5, 0.4, 0.3), {"MemTotal": 1000, "MemAvailable": 400})


@pytest.fixture
def master(tmp_path: Path) -> Master:
    cluster = load_cluster(write_spec(tmp_path / "cluster", nodes=1))
    return Master(cluster, tmp_path / "history.db")


def _standby_drivers() -> list[psutil.Process]:
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "bramble.jobs.driver" in " ".join(p.cmdline()):
                found.append(p)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue  # ended (another test's child not yet reaped): not a driver
    return found


def test_the_lifespan_opens_every_part_and_closes_every_part(master: Master) -> None:
    tel = master.cluster.spec.telemetry
    secrets = master.cluster.secrets()
    data = encode(
        SAMPLE, node="node-1", boot=1, seq=1, ts=time.time(), interval=5.0,
        key=secrets.telemetry_key, key_id=secrets.telemetry_key_id,
    )  # fmt: skip

    async def run() -> None:
        app = master.app
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://master") as client,
        ):
            # started: history open, writer running, collector receiving, jobs service up
            assert master.writer._thread.is_alive()
            assert (await client.get("/api/stats")).json()["accepted"] == 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1")
                )
                tx.sendto(data, (str(tel.group), tel.port))
            deadline = time.monotonic() + 10
            while not (await client.get("/api/nodes")).json() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            node = (await client.get("/api/nodes/node-1")).json()
            assert node["status"] == "up" and node["metrics"]["mem_used"] == 600
            assert (await client.get("/api/jobs")).json() == []  # the jobs service is up
            assert _standby_drivers()  # with its standby driver
            assert "bramble_node_cpu_usage_ratio" in (await client.get("/metrics")).text

    asyncio.run(run())
    # closed, in reverse: no jobs service or driver left, no socket, the last rows written
    assert not hasattr(master.app.state, "jobs")
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in _standby_drivers())
    assert master.collector._transport is None
    assert not master.writer._thread.is_alive()
    assert master.history._db is None and master.reader._connection is None
    blocks = master.history.open().db.execute("SELECT data FROM blocks WHERE tier = 0")
    rows = sum(len(decode_rows(data)) for (data,) in blocks)
    master.history.close()
    assert rows == 1  # written at close, long before the first flush was due


def test_a_part_that_fails_to_start_closes_those_started_before_it(
    master: Master, tmp_path: Path
) -> None:
    def no_socket() -> socket.socket:
        raise OSError(98, "Address already in use")

    master.telemetry = no_socket

    async def start() -> None:
        async with master.app.router.lifespan_context(master.app):
            pytest.fail("started without its telemetry socket")

    with pytest.raises(OSError, match="Address already in use"):
        asyncio.run(start())
    assert not master.writer._thread.is_alive()
    assert master.history._db is None and master.reader._connection is None
    assert not hasattr(master.app.state, "jobs")


def test_openapi_describes_every_response(master: Master) -> None:
    doc = master.app.openapi()
    schemas = doc["components"]["schemas"]
    for name in ("NodeView", "SampleView", "Change", "Stats", "Snapshot", "ClusterSeries"):
        assert name in schemas
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            ok = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
            assert ok, f"{method} {path}: no success response"
            for response in ok.values():
                content = response.get("content", {})
                assert content, f"{method} {path}: its response has no content described"
                for media, body in content.items():
                    schema = body.get("schema", {})
                    if media.startswith("text/plain"):
                        continue  # /metrics: Prometheus text
                    assert schema, f"{method} {path}: {media} has no schema"
                    assert schema.get("additionalProperties") is not True, f"{method} {path}"
    events = doc["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]
    assert events["text/event-stream"]["schema"]["$ref"] == "#/components/schemas/Snapshot"
