"""Enrollment over the master's HTTP APIs.

`POST /api/enroll`, served on the master's HTTPS enrollment port only, takes the join token
(`Authorization: Bearer <join token>`) and nothing else: it answers 200 (enrolled), 202
(pending) or 403 (refused), and 429 when rate limited; on the plain HTTP API it is always
refused. `POST /api/enroll/due`, beside it, tells an enrolled board whether its keys are due
for rotation, to a proof made with its own key only (200, else 403; 429 when rate limited).
Listing, approving, refusing, revoking and marking nodes due need the admin token. The routes call
the service off the event loop and then tell ON_CHANGED, on the loop, what changed (the
changes to show, and whether the credentials the collector verifies with changed).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from bramble.errors import BrambleError
from bramble.master.views import Change
from bramble.trust.service import (
    DueAnswer,
    DueBody,
    EnrollAnswer,
    EnrollBody,
    Enrollment,
    NodeTrust,
    PendingView,
)

_STATUS = {"enrolled": 200, "pending": 202, "refused": 403}


class ApproveBody(BaseModel):
    """Which waiting request to enroll: a MAC or the name it waits under; and its name."""

    who: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=63)


class RefuseBody(BaseModel):
    """Which waiting request to refuse: a MAC or the name it waits under."""

    who: str = Field(max_length=64)


class RevokeBody(BaseModel):
    """The node whose credentials end now."""

    name: str = Field(max_length=63)


class RotateBody(BaseModel):
    """The nodes due to rotate their keys now: these names, or (None) every enrolled one."""

    names: list[str] | None = Field(default=None, max_length=65536)


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def enroll_router(
    service: Enrollment, on_changed: Callable[[list[Change], bool], None]
) -> APIRouter:
    """`POST /api/enroll` of SERVICE, and `POST /api/enroll/due`: the routes the master
    serves on its HTTPS enrollment port, where the board's key travels encrypted."""
    routes = APIRouter()

    @routes.post(
        "/api/enroll",
        summary="A board asks to enroll, with the join token",
        response_model=EnrollAnswer,
        responses={
            202: {"model": EnrollAnswer, "description": "waiting for approval"},
            403: {"model": EnrollAnswer, "description": "refused"},
            429: {"model": EnrollAnswer, "description": "rate limited"},
        },
    )
    async def enroll(
        body: EnrollBody,
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        address = request.client.host if request.client is not None else ""
        answer, change = await asyncio.to_thread(
            service.enroll, body, _bearer(authorization), address
        )
        if change is not None:
            on_changed([change], answer.status == "enrolled")
        status = _STATUS[answer.status]
        if answer.status == "refused" and answer.reason.startswith("rate limited"):
            status = 429
        return JSONResponse(answer.model_dump(), status_code=status)

    @routes.post(
        "/api/enroll/due",
        summary="An enrolled board asks whether its keys are due for rotation",
        response_model=DueAnswer,
        responses={
            403: {"model": DueAnswer, "description": "refused: no valid, fresh proof"},
            429: {"model": DueAnswer, "description": "rate limited"},
        },
    )
    async def due(body: DueBody, request: Request) -> JSONResponse:
        address = request.client.host if request.client is not None else ""
        answer = await asyncio.to_thread(service.check_due, body, address)
        status = 200
        if answer.status == "refused":
            status = 429 if answer.reason.startswith("rate limited") else 403
        return JSONResponse(answer.model_dump(), status_code=status)

    return routes


def plain_enroll_router(where: str) -> APIRouter:
    """`POST /api/enroll` on the plain HTTP API: always refused (WHERE says why and where to
    enroll), its body never read as a request, so no key sent in the clear is ever used."""
    routes = APIRouter()

    # Not in the API's description: it is no route to use, only a pointer to the real one.
    @routes.post("/api/enroll", include_in_schema=False)
    def enroll() -> JSONResponse:
        answer = EnrollAnswer(status="refused", reason=where)
        return JSONResponse(answer.model_dump(), status_code=403)

    return routes


def router(
    service: Enrollment,
    admin_token: str,
    on_changed: Callable[[list[Change], bool], None],
) -> APIRouter:
    """The admin's enrollment routes of SERVICE, guarded by ADMIN_TOKEN: list, approve,
    refuse, revoke, mark due for rotation (enrolling itself is `enroll_router`, on the HTTPS
    port)."""
    routes = APIRouter()

    def require_admin(
        authorization: Annotated[str | None, Header()] = None,
    ) -> None:
        if not hmac.compare_digest(_bearer(authorization).encode(), admin_token.encode()):
            raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})

    admin = [Depends(require_admin)]

    @routes.get("/api/trust/nodes", summary="Enrolled nodes (admin token)", dependencies=admin)
    def nodes() -> list[NodeTrust]:
        return service.nodes()

    @routes.get(
        "/api/trust/pending", summary="Requests waiting for approval (admin)", dependencies=admin
    )
    def pending() -> list[PendingView]:
        return service.pending()

    @routes.post("/api/trust/approve", summary="Enroll a waiting board (admin)", dependencies=admin)
    async def approve(body: ApproveBody) -> NodeTrust:
        try:
            view, change = await asyncio.to_thread(service.approve, body.who, body.name)
        except BrambleError as exc:
            raise HTTPException(409, str(exc)) from None
        on_changed([change], True)
        return view

    @routes.post(
        "/api/trust/refuse",
        summary="Refuse a waiting board; its key asking again is refused (admin)",
        dependencies=admin,
    )
    async def refuse(body: RefuseBody) -> PendingView:
        try:
            view, change = await asyncio.to_thread(service.refuse, body.who)
        except BrambleError as exc:
            raise HTTPException(409, str(exc)) from None
        on_changed([change], False)
        return view

    @routes.post(
        "/api/trust/revoke", summary="End a node's credentials now (admin)", dependencies=admin
    )
    async def revoke(body: RevokeBody) -> NodeTrust:
        try:
            view, change = await asyncio.to_thread(service.revoke, body.name)
        except BrambleError as exc:
            raise HTTPException(404, str(exc)) from None
        on_changed([change], True)
        return view

    @routes.post(
        "/api/trust/rotate",
        summary="Mark enrolled nodes due to rotate their keys now (admin)",
        dependencies=admin,
    )
    async def rotate(body: RotateBody) -> dict[str, list[str]]:
        try:
            names = await asyncio.to_thread(service.mark_rotation, body.names)
        except BrambleError as exc:
            raise HTTPException(404, str(exc)) from None
        return {"due": names}

    @routes.post(
        "/api/trust/retire-shared-key",
        summary="Stop accepting the shared telemetry key (admin)",
        dependencies=admin,
    )
    async def retire_shared_key() -> dict[str, str]:
        await asyncio.to_thread(service.retire_shared_key)
        on_changed([], True)
        return {"shared_key": "retired"}

    return routes
