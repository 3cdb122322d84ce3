"""The clients' one HTTP client: JSON, the admin token, and what a user sees when it fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from io import StringIO
from typing import Annotated, Any

import pytest
from bramble_testing import free_port, serving
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import PlainTextResponse
from rich.console import Console

from bramble.client.http import MasterClient
from bramble.client.status import history_line, status_view
from bramble.errors import BrambleError, MasterUnreachableError

app = FastAPI()


@app.get("/api/echo")
def echo(limit: int = 0, authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    return {"limit": limit, "auth": authorization}


@app.get("/api/missing")
def missing() -> None:
    raise HTTPException(404, "no node called 'x'")


@app.get("/api/text")
def text() -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serving(app) as url:
        yield url


def test_json_params_and_token(base: str) -> None:
    with MasterClient(base + "/", token="t0k") as master:
        assert master.get("/api/echo", limit=3, state=None) == {"limit": 3, "auth": "Bearer t0k"}


def test_errors_say_what_the_master_said(base: str) -> None:
    with MasterClient(base) as master:
        with pytest.raises(BrambleError, match=r"GET /api/missing: HTTP 404: no node called 'x'"):
            master.get("/api/missing")
        with pytest.raises(BrambleError, match="not JSON"):
            master.get("/api/text")


def test_no_master_answering() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    with (
        MasterClient(base, hint=", or pass --url") as master,
        pytest.raises(MasterUnreachableError, match=r"no master answering at .*, or pass --url$"),
    ):
        master.get("/api/nodes", timeout=2)


def test_status_view_counts_and_colours() -> None:
    now = time.time()
    node = {
        "name": "n1",
        "status": "up",
        "last_seen": now - 2,
        "sample": {"cpuusage": 0.25, "cputemp": 50.0, "loadavg": [0.5, 0, 0],
                   "meminfo": {"MemTotal": 2048, "MemAvailable": 1024}},
        "metrics": {"mem_used": 1024.0, "mem_total": 2048.0},
    }  # fmt: skip
    console = Console(file=StringIO(), width=100, color_system=None)
    alerts = [
        {"rule": "node_down", "node": "n2", "severity": "critical", "state": "firing",
         "condition": "down == 1", "fired_at": now - 120},
        {"rule": "hot", "node": "n1", "severity": "warning", "state": "pending",
         "condition": "cputemp > 80", "fired_at": None},
    ]  # fmt: skip
    nodes = [node, {**node, "name": "n2", "status": "down"}]
    console.print(status_view(nodes, "http://m", now, alerts))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "bramble at http://m" in out and "25.0%" in out and "1/2 MiB" in out
    assert "1 up, 0 stale, 1 down; 1 alert firing" in out
    assert "critical node_down on n2: down == 1 (since 2 min)" in out
    assert "hot" not in out  # pending: not firing yet
    assert "history" not in out  # a master that does not say


def test_status_says_what_history_holds_of_its_bound() -> None:
    now = time.time()
    health = {"history_bytes": 3 << 20, "history_max_bytes": 2 << 30, "history_flushed": now - 12,
              "history_flush_seconds": 60.0}  # fmt: skip
    assert history_line(health, now) == "history: 3.0 MiB of 2.0 GiB, saved 12 s ago (every 60 s)"
    fresh = {**health, "history_bytes": None, "history_flushed": None}
    assert history_line(fresh, now) == "history: up to 2.0 GiB, not saved yet (every 60 s)"
    console = Console(file=StringIO(), width=100, color_system=None)
    console.print(status_view([], "http://m", now, None, health))
    assert "history: 3.0 MiB of 2.0 GiB" in console.file.getvalue()  # type: ignore[attr-defined]
