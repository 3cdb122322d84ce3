"""History read over an exact range: `until` beside `since` in the reader and the history routes,
which refuse a range that ends before it starts, spans too long or is not a number (422)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from bramble.master.api import MAX_RANGE, router
from bramble.master.history import History, metric_row
from bramble.master.history_reader import HistoryReader
from bramble.telemetry.wire import Sample

SAMPLE = Sample(1500, 50.0, 0.25, (1.0, 0.5, 0.25), {"MemTotal": 1000, "MemAvailable": 400})


def fill(history: History, origin: int, start: int, seconds: int, *, flush: bool = True) -> None:
    """SECONDS of 1 Hz samples of n1 from START (cpuusage = seconds since ORIGIN / 1000)."""
    for t in range(start, start + seconds):
        values = list(metric_row(SAMPLE, 0.0, 0.0))
        values[0] = (t - origin) / 1000
        history.write([("n1", float(t), tuple(values), ())])
    if flush:
        history.flush(start + seconds + 1.0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[History, HistoryReader, int]]:
    history = History(tmp_path / "h.db").open()
    start = int(time.time()) - 600
    fill(history, start, start, 300)  # on disk: the first 300 s
    fill(history, start, start + 300, 200, flush=False)  # in memory (the head): the next 200 s
    reader = HistoryReader(tmp_path / "h.db", history.keep, history).open()
    try:
        yield history, reader, start
    finally:
        reader.close()
        history.close()


def test_until_ends_the_series_on_disk_and_in_the_head(
    store: tuple[History, HistoryReader, int],
) -> None:
    _, reader, start = store
    now = time.time()
    # from disk alone, then across disk and head, then from the head alone
    for lo, hi in (
        (start + 10, start + 100),
        (start + 250, start + 400),
        (start + 350, start + 420),
    ):
        got = reader.node_series("n1", ["cpuusage"], lo, 1, now, until=hi)["cpuusage"]
        assert [t for t, _ in got] == [float(t) for t in range(lo, hi)]
        assert got[0][1] == pytest.approx((lo - start) / 1000)
        cluster = reader.cluster_series("cpuusage", lo, 10, now, until=hi)
        assert cluster[0][0] >= lo - 10 and cluster[-1][0] < hi
    # without until: everything from since on, the head included
    everything = reader.node_series("n1", ["cpuusage"], start, 1, now)["cpuusage"]
    assert len(everything) == 500


def test_resolve_sizes_the_step_for_the_range_up_to_until() -> None:
    now = 1_800_000_000.0
    start, step = HistoryReader.resolve(now - 86400 - 600, None, now, until=now - 86400)
    assert start == now - 86400 - 600 and step == 2  # 600 s in about 300 points
    start, _ = HistoryReader.resolve(None, None, now, until=now - 3600)
    assert start == now - 3600 - 900  # 15 minutes before until


class NoNodes:
    """A node table without nodes: the history routes answer from history alone."""

    def node(self, name: str) -> None:
        return None


class Client:
    """GETs to APP in process (the routes are plain functions: no lifespan to run)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str, params: dict[str, object]) -> httpx.Response:
        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://master") as c:
                return await c.get(path, params=params)  # type: ignore[arg-type]

        return asyncio.run(fetch())


@pytest.fixture
def client(store: tuple[History, HistoryReader, int]) -> Client:
    app = FastAPI()
    app.include_router(router(NoNodes(), store[1]))  # type: ignore[arg-type]
    return Client(app)


def test_history_routes_take_until(
    client: Client, store: tuple[History, HistoryReader, int]
) -> None:
    start = store[2]
    got = client.get(
        "/api/nodes/n1/history",
        params={"metric": "cpuusage", "since": start + 100, "until": start + 160, "step": 1},
    )
    assert got.status_code == 200
    assert [p[0] for p in got.json()["points"]] == [
        float(t) for t in range(start + 100, start + 160)
    ]
    ago = client.get("/api/nodes/n1/history", params={"since": -600, "until": -300, "step": 10})
    assert ago.status_code == 200 and 28 <= len(ago.json()["points"]) <= 31
    cluster = client.get(
        "/api/cluster/history",
        params={"metric": "mem_used", "since": start + 5, "until": start + 8, "step": 1},
    )
    assert cluster.status_code == 200
    assert cluster.json()["points"] == [[float(start + i), 600.0] for i in (5, 6, 7)]


@pytest.mark.parametrize("path", ["/api/nodes/n1/history", "/api/cluster/history"])
@pytest.mark.parametrize(
    ("since", "until", "says"),
    [
        (-60, -120, "until must come after since"),
        (-60, -60, "until must come after since"),
        (time.time() + 3600, None, "until must come after since"),
        (-MAX_RANGE - 10, None, "at most 400 days"),
        (-60, "nan", "finite number"),
        ("inf", None, "finite number"),
        (-60, "yesterday", "valid number"),
    ],
    # ids of their own: a time in the future differs between the two test processes
    ids=["before", "same", "future", "too-long", "nan", "inf", "not-a-number"],
)
def test_a_bad_range_is_refused_with_422(
    client: Client, path: str, since: object, until: object, says: str
) -> None:
    params = {"since": since} | ({} if until is None else {"until": until})
    got = client.get(path, params=params)
    assert got.status_code == 422
    assert says in str(got.json()["detail"])
