"""`/dist/`: the master serves bramble and its dependencies to its nodes, read-only.

- `GET /dist/` the page pip reads with `--no-index --find-links http://MASTER:PORT/dist/`
- `GET /dist/version` the master's version, as text
- `GET /dist/requirement` what a node installs: `bramble-cluster==VERSION`, as text
- `GET /dist/NAME.whl` one wheel of that page

Open to the cluster LAN like the other reads: wheels hold no secret.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse

from bramble.software.depot import Depot, find_links_page, open_entry
from bramble.software.own import OwnWheelError, own_wheel

WHEEL_TYPE = "application/octet-stream"
_NO_STORE = {"Cache-Control": "no-cache"}


def software_router(wheels_dir: Path, depot: Depot | None = None) -> APIRouter:
    """The `/dist/` routes serving the master's own wheel and the wheels of WHEELS_DIR."""
    depot = depot or Depot(wheels_dir, own_wheel)
    router = APIRouter(prefix="/dist", tags=["software"])

    def _unavailable(exc: OwnWheelError) -> HTTPException:
        return HTTPException(503, f"bramble's wheel is not available: {exc}", {"Retry-After": "10"})

    @router.get(
        "/",
        summary="Wheels for the nodes (pip --find-links page)",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
    )
    async def index() -> HTMLResponse:
        entries, note = await run_in_threadpool(depot.listing)
        try:
            version = (await run_in_threadpool(depot.own)).version
        except OwnWheelError:
            version = "(unavailable)"
        return HTMLResponse(find_links_page(entries, version=version, note=note), headers=_NO_STORE)

    @router.get(
        "/version",
        summary="The master's bramble version",
        response_class=PlainTextResponse,
    )
    async def version() -> PlainTextResponse:
        try:
            own = await run_in_threadpool(depot.own)
        except OwnWheelError as exc:
            raise _unavailable(exc) from None
        return PlainTextResponse(own.version + "\n", headers=_NO_STORE)

    @router.get(
        "/requirement",
        summary="What a node installs: NAME==VERSION of the master",
        response_class=PlainTextResponse,
    )
    async def requirement() -> PlainTextResponse:
        try:
            own = await run_in_threadpool(depot.own)
        except OwnWheelError as exc:
            raise _unavailable(exc) from None
        return PlainTextResponse(own.requirement + "\n", headers=_NO_STORE)

    @router.get(
        "/{name}",
        summary="One wheel",
        response_class=Response,
        responses={
            200: {
                "content": {WHEEL_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def wheel(name: str) -> Response:
        entry = await run_in_threadpool(depot.find, name)
        if entry is None:
            raise HTTPException(404, "no such wheel here: see /dist/ for what is served")
        if entry.path is None:
            own = await run_in_threadpool(depot.own)
            return Response(own.data, media_type=WHEEL_TYPE)
        opened = await run_in_threadpool(open_entry, entry)
        if opened is None:
            raise HTTPException(404, "no such wheel here: see /dist/ for what is served")
        size, chunks = opened
        return StreamingResponse(
            chunks, media_type=WHEEL_TYPE, headers={"Content-Length": str(size)}
        )

    return router
