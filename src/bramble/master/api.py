"""The master's HTTP API: the node table, history, changes, stats, the event stream, the page.

The routes read through two protocols defined here, `NodeSource` and `HistorySource`, so the
API knows nothing of how the master is put together (`main` assembles it).
"""

from __future__ import annotations

import hmac
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Protocol, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from bramble.master.limits import StreamResponse
from bramble.master.silences import SilenceRequest
from bramble.master.views import (
    AlertView,
    Change,
    ClusterSeries,
    HealthView,
    MetricInfo,
    NodeMetric,
    NodeSeries,
    NodeView,
    Point,
    ProcessesView,
    SilenceView,
    Snapshot,
    Stats,
)
from bramble.telemetry.metrics import ABSENT_AT_ZERO, METRICS, STORED

STORED_NAMES = frozenset(m.name for m in STORED)

STATIC = Path(str(resources.files("bramble.master") / "static"))
PLACEHOLDER = "<!doctype html><title>bramble</title><p>bramble master: see <a href=/docs>/docs</a>"
HISTORY_METRICS = tuple(m.name for m in STORED)
MAX_RANGE = 400 * 86400
"""The longest range a history query may span, seconds (beyond what any tier keeps)."""
SINCE = Query(
    allow_inf_nan=False,
    description="epoch seconds, or negative: seconds ago (default 15 min before until)",
)
UNTIL = Query(
    allow_inf_nan=False, description="epoch seconds, or negative: seconds ago (default now)"
)
T = TypeVar("T")
REGISTRY = [
    MetricInfo(
        name=m.name,
        unit=m.unit,
        help=m.help,
        cluster=m.cluster,
        stored=m.stored,
        absent_at_zero=m.name in ABSENT_AT_ZERO,
    )
    for m in METRICS
]


class NodeSource(Protocol):
    """The live node table, as the API reads it."""

    def nodes(self) -> list[NodeView]:
        """Every node's view, by name."""
        ...

    def node(self, name: str) -> NodeView | None:
        """One node's view, or None."""
        ...

    def processes(self, name: str) -> ProcessesView | None:
        """One node's latest top processes, or None for an unknown node."""
        ...

    def stats(self) -> Stats:
        """The datagram counts."""
        ...

    def changes(self, limit: int) -> list[Change]:
        """The newest LIMIT changes, newest first (called on the event loop)."""
        ...

    def events(self) -> AsyncIterator[bytes] | None:
        """A new viewer's server-sent event stream; None when too many are watching."""
        ...

    def leave(self) -> None:
        """A viewer's stream (one `events` gave) has ended."""
        ...

    def health_view(self) -> HealthView:
        """What works in the master, part by part."""
        ...

    def alert_views(self) -> list[AlertView]:
        """Alerts pending, firing, or resolved a short while ago: firing first."""
        ...


class HistorySource(Protocol):
    """The stored history, as the API reads it."""

    def resolve(
        self, since: float | None, step: float | None, now: float, until: float | None = None
    ) -> tuple[float, float]:
        """Absolute SINCE and the step to use for the range up to UNTIL (default NOW)."""
        ...

    def node_series(
        self,
        node: str,
        metrics: list[str],
        since: float,
        step: float,
        now: float,
        until: float | None = None,
    ) -> dict[str, list[Point]]:
        """Each of METRICS for NODE from SINCE to UNTIL (default NOW), per STEP seconds."""
        ...

    def cluster_series(
        self, metric: str, since: float, step: float, now: float, until: float | None = None
    ) -> list[Point]:
        """METRIC over all nodes from SINCE to UNTIL (default NOW), per STEP seconds."""
        ...


class SilenceStore(Protocol):
    """The silences, as the API keeps them."""

    def add(self, request: SilenceRequest, now: float) -> SilenceView:
        """A new silence from NOW (ValueError when there are too many)."""
        ...

    def expire(self, silence_id: str, now: float) -> SilenceView | None:
        """End a silence at NOW; None if there is no such silence."""
        ...

    def views(self, now: float) -> list[SilenceView]:
        """Every silence, active ones first."""
        ...


class EventStream(StreamingResponse):
    """Server-sent events."""

    media_type = "text/event-stream"


def _metric_names(metric: str) -> list[str]:
    names = [m.strip() for m in metric.split(",") if m.strip()]
    for name in names:
        core = name.startswith("core.") and name[5:].isdigit()
        if name not in HISTORY_METRICS and not core:
            raise HTTPException(
                422, f"unknown metric '{name}': use one of {', '.join(HISTORY_METRICS)} or core.N"
            )
    if not names or len(names) > 32:
        raise HTTPException(422, "give 1 to 32 metrics, separated by commas")
    return names


def _window(
    history: HistorySource, since: float | None, until: float | None, step: float | None, now: float
) -> tuple[float, float, float | None]:
    """The absolute start, step and end (None: up to now) of a history query; 422 unless
    UNTIL comes after SINCE and the range is at most MAX_RANGE."""
    end = None if until is None else (now + until if until <= 0 else until)
    start, width = history.resolve(since, step, now, end)
    stop = now if end is None else end
    if stop <= start:
        raise HTTPException(422, "until must come after since (until is now when not given)")
    if stop - start > MAX_RANGE:
        raise HTTPException(422, f"give a range of at most {MAX_RANGE // 86400} days")
    return start, width, end


def _stored(read: Callable[[], T]) -> T:
    """READ from history; 503 saying why when history cannot be read (see /api/health)."""
    try:
        return read()
    except (sqlite3.Error, OSError) as exc:
        raise HTTPException(503, f"history cannot be read: {exc}") from None


def router(source: NodeSource, history: HistorySource) -> APIRouter:
    """The API's routes, reading SOURCE and HISTORY."""
    routes = APIRouter()

    @routes.get("/api/nodes", summary="Every node with its status and latest sample")
    def nodes() -> list[NodeView]:
        return source.nodes()

    @routes.get("/api/nodes/{name}", summary="One node")
    def node(name: str) -> NodeView:
        view = source.node(name)
        if view is None:
            raise HTTPException(404, f"no node called '{name}'")
        return view

    @routes.get("/api/nodes/{name}/processes", summary="A node's top processes")
    def node_processes(name: str) -> ProcessesView:
        view = source.processes(name)
        if view is None:
            raise HTTPException(404, f"no node called '{name}'")
        return view

    @routes.get("/api/nodes/{name}/history", summary="A node's metrics over time")
    def node_history(
        name: str,
        metric: Annotated[str, Query(description="metric, or several separated by commas")] = (
            "cpuusage"
        ),
        since: Annotated[float | None, SINCE] = None,
        until: Annotated[float | None, UNTIL] = None,
        step: Annotated[float | None, Query(gt=0, description="seconds per point")] = None,
    ) -> NodeSeries | NodeMetric:
        names = _metric_names(metric)
        now = time.time()
        start, width, end = _window(history, since, until, step, now)
        series = _stored(lambda: history.node_series(name, names, start, width, now, end))
        view = source.node(name)
        if view is None and not any(series.values()):
            raise HTTPException(404, f"no node called '{name}'")
        known = view["metrics"] if view is not None else None
        if known:
            for absent in [m for m in names if m in STORED_NAMES and m not in known]:
                series[absent] = []  # history keeps 0 where the node reports nothing
        if "," in metric:
            return NodeSeries(node=name, step=width, series=series)
        return NodeMetric(node=name, metric=names[0], step=width, points=series[names[0]])

    @routes.get("/api/cluster/history", summary="A metric over all nodes (mean or sum)")
    def cluster_history(
        metric: str = "cpuusage",
        since: Annotated[float | None, SINCE] = None,
        until: Annotated[float | None, UNTIL] = None,
        step: Annotated[float | None, Query(gt=0)] = None,
    ) -> ClusterSeries:
        if metric not in HISTORY_METRICS:
            raise HTTPException(
                422, f"unknown metric '{metric}': use one of {', '.join(HISTORY_METRICS)}"
            )
        now = time.time()
        start, width, end = _window(history, since, until, step, now)
        points = _stored(lambda: history.cluster_series(metric, start, width, now, end))
        return ClusterSeries(metric=metric, step=width, points=points)

    @routes.get("/api/registry", summary="Every metric of the registry: name, unit, what it is")
    def registry() -> list[MetricInfo]:
        return REGISTRY

    @routes.get("/api/routes", summary="The API paths this master serves")
    def api_routes(request: Request) -> list[str]:
        """What a page may ask this master (a page may be newer than the master, or older):
        every `/api/` path it serves, sorted."""
        paths = request.app.openapi().get("paths", {})  # built once, then kept by the app
        return sorted(p for p in paths if p.startswith("/api/"))

    @routes.get("/api/changes", summary="Recent node events, newest first")
    async def changes(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Change]:
        # async: on the event loop, where the recent changes are kept
        return source.changes(limit)

    @routes.get("/api/stats", summary="Datagrams accepted and rejected by reason")
    def stats() -> Stats:
        return source.stats()

    @routes.get("/api/health", summary="What works: the collector, the live loops, history, jobs")
    def health() -> HealthView:
        return source.health_view()

    @routes.get(
        "/api/alerts",
        summary="Alerts pending, firing or resolved lately: firing first, then by severity",
    )
    def alerts() -> list[AlertView]:
        return source.alert_views()

    @routes.get(
        "/api/events",
        summary="Server-sent events: snapshot, nodes, change, alert, stats",
        response_class=EventStream,
        response_model=None,
        responses={
            200: {
                "model": Snapshot,
                "description": "server-sent events: first `snapshot` (a Snapshot, as here), "
                "then `nodes` (a list of the NodeViews that changed, every 100 ms), `change` "
                "(a Change), `alert` (an AlertView that fired or resolved) and `stats` (a "
                "Stats, every second); a viewer that falls 2 s behind gets a fresh "
                "`snapshot`; one that stops reading is dropped",
            },
            503: {"description": "as many viewers as the master takes are watching"},
        },
    )
    async def events() -> Response:
        stream = source.events()
        if stream is None:
            return PlainTextResponse(
                "too many viewers: try again later", 503, headers={"Retry-After": "10"}
            )
        return StreamResponse(stream, on_close=source.leave)

    return routes


def silences_router(silences: SilenceStore, token: str) -> APIRouter:
    """The silences: anyone reads them; adding and ending one needs the admin TOKEN."""

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})

    # async: on the event loop, where the notifier reads them
    routes = APIRouter()

    @routes.get("/api/silences", summary="Silences: active ones first, then those ended lately")
    async def list_silences() -> list[SilenceView]:
        return silences.views(time.time())

    @routes.post(
        "/api/silences",
        summary="Silence the alerts of some rules on some nodes for a while (admin token)",
        dependencies=[Depends(admin)],
    )
    async def add_silence(request: SilenceRequest) -> SilenceView:
        try:
            return silences.add(request, time.time())
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None

    @routes.delete(
        "/api/silences/{silence_id}",
        summary="End a silence now (admin token)",
        dependencies=[Depends(admin)],
    )
    async def end_silence(silence_id: str) -> SilenceView:
        ended = silences.expire(silence_id, time.time())
        if ended is None:
            raise HTTPException(404, f"no silence '{silence_id[:40]}'")
        return ended

    return routes


def mount_page(app: FastAPI) -> None:
    """The dashboard at `/` and its files under `/static`."""
    if (STATIC / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
    else:

        @app.get("/", include_in_schema=False)
        def placeholder() -> HTMLResponse:
            return HTMLResponse(PLACEHOLDER)
