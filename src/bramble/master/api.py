"""The master's HTTP API: JSON, the server-sent event stream, Prometheus metrics, the page."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from bramble import __version__
from bramble.master.history import COLUMNS, HistoryReader
from bramble.master.metrics import exposition

if TYPE_CHECKING:
    from bramble.master.service import MasterService

STATIC = Path(str(resources.files("bramble.master") / "static"))
PLACEHOLDER = "<!doctype html><title>bramble</title><p>bramble master: see <a href=/docs>/docs</a>"


def _metric_names(metric: str) -> list[str]:
    names = [m.strip() for m in metric.split(",") if m.strip()]
    for name in names:
        core = name.startswith("core.") and name[5:].isdigit()
        if name not in COLUMNS and not core:
            raise HTTPException(
                422, f"unknown metric '{name}': use one of {', '.join(COLUMNS)} or core.N"
            )
    if not names or len(names) > 32:
        raise HTTPException(422, "give 1 to 32 metrics, separated by commas")
    return names


def create_app(master: MasterService) -> FastAPI:
    """The FastAPI app serving MASTER."""
    app = FastAPI(
        title="bramble master",
        version=__version__,
        description="Live node table, history and events of a bramble cluster.",
    )
    reader: HistoryReader = master.reader
    app.state.spec_path = master.spec.source

    @app.get("/api/nodes", summary="Every node with its status and latest sample")
    def nodes() -> list[dict[str, Any]]:
        return master.nodes()

    @app.get("/api/nodes/{name}", summary="One node")
    def node(name: str) -> dict[str, Any]:
        view = master.node(name)
        if view is None:
            raise HTTPException(404, f"no node called '{name}'")
        return view

    @app.get("/api/nodes/{name}/history", summary="A node's metrics over time")
    def node_history(
        name: str,
        metric: Annotated[str, Query(description="metric, or several separated by commas")] = (
            "cpuusage"
        ),
        since: Annotated[
            float | None, Query(description="epoch seconds, or negative: seconds ago")
        ] = None,
        step: Annotated[float | None, Query(gt=0, description="seconds per point")] = None,
    ) -> dict[str, Any]:
        names = _metric_names(metric)
        now = time.time()
        start, width = reader.resolve(since, step, now)
        series = reader.node_series(name, names, start, width, now)
        if master.node(name) is None and not any(series.values()):
            raise HTTPException(404, f"no node called '{name}'")
        if "," in metric:
            return {"node": name, "step": width, "series": series}
        return {"node": name, "metric": names[0], "step": width, "points": series[names[0]]}

    @app.get("/api/cluster/history", summary="A metric over all nodes (mean or sum)")
    def cluster_history(
        metric: str = "cpuusage",
        since: float | None = None,
        step: Annotated[float | None, Query(gt=0)] = None,
    ) -> dict[str, Any]:
        if metric not in COLUMNS:
            raise HTTPException(422, f"unknown metric '{metric}': use one of {', '.join(COLUMNS)}")
        now = time.time()
        start, width = reader.resolve(since, step, now)
        points = reader.cluster_series(metric, start, width, now)
        return {"metric": metric, "step": width, "points": points}

    @app.get("/api/changes", summary="Recent node events, newest first")
    async def changes(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        # The newest changes are in memory at once; SQLite has them within a second.
        # (async: runs on the loop, which is the only writer of `recent`.)
        recent = master.recent
        if limit <= len(recent) or len(recent) < (recent.maxlen or 0):
            return list(recent)[::-1][:limit]
        return reader.changes(limit)

    @app.get("/api/stats", summary="Datagrams accepted and rejected by reason")
    def stats() -> dict[str, Any]:
        return master.stats()

    @app.get("/api/events", summary="Server-sent events: snapshot, nodes, change, stats")
    async def events() -> StreamingResponse:
        return StreamingResponse(
            master.hub.stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/metrics", summary="Prometheus exposition", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = exposition(master)
        return Response(body, media_type=content_type)

    try:
        from bramble.jobs.api import router as jobs_router
    except ImportError:
        pass
    else:
        app.include_router(jobs_router)

    # The software the nodes install: bramble at the master's version, and wheels for them.
    from bramble.software.api import software_router

    app.include_router(software_router(Path(master.spec.software.wheels_dir)))

    if (STATIC / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
    else:

        @app.get("/", include_in_schema=False)
        def placeholder() -> HTMLResponse:
            return HTMLResponse(PLACEHOLDER)

    return app
