"""Alerts pushed to an Alertmanager's API (a real HTTP server here): each change at once,
firing ones with an end a few minutes on, resolved ones with theirs; a failing one is
reported and the push goes on."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bramble.demo import free_port
from bramble.master.alertmanager import VALID_FOR, AlertmanagerPush, payload
from bramble.master.alerts import fingerprint
from bramble.master.health import Health
from bramble.master.views import AlertState, AlertView

NOW = 1_700_000_000.0


def alert(node: str, state: AlertState) -> AlertView:
    return AlertView(
        rule="hot", node=node, severity="warning", state=state, condition="cputemp > 80",
        value=85.0, summary="hot", active_at=NOW - 70, fired_at=NOW - 10,
        resolved_at=NOW if state == "resolved" else None, fingerprint=fingerprint("hot", node),
    )  # fmt: skip


@pytest.fixture
def alertmanager() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    got: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_payload_is_alertmanagers_api_v2() -> None:
    body = payload([alert("n1", "firing"), alert("n2", "resolved"), alert("n3", "pending")],
                   "http://master:8080", NOW)  # fmt: skip
    assert [set(a) for a in body] == [
        {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    ] * 2  # the pending one is not sent
    firing, resolved = body
    assert firing["labels"] == {"alertname": "hot", "node": "n1", "severity": "warning"}
    assert firing["startsAt"] == "2023-11-14T22:13:10.000Z"
    assert firing["endsAt"] == "2023-11-14T22:17:20.000Z"  # VALID_FOR on
    assert VALID_FOR == 240
    assert resolved["endsAt"] == "2023-11-14T22:13:20.000Z"  # when it resolved


def test_changes_are_pushed_at_once_and_a_dead_alertmanager_is_reported(
    alertmanager: tuple[str, list[tuple[str, Any]]],
) -> None:
    url, got = alertmanager
    health = Health()
    current = [alert("n1", "firing")]

    async def run() -> AlertmanagerPush:
        push = AlertmanagerPush(
            [url, f"http://127.0.0.1:{free_port()}"], "http://master:8080", lambda: current,
            health, timeout=2, clock=lambda: NOW,
        )  # fmt: skip
        push.start()
        try:
            for _ in range(100):  # the first push: every alert there is
                await asyncio.sleep(0.02)
                if got:
                    break
            push.alerts([alert("n1", "resolved")])
            for _ in range(100):  # the receiver has it, and the push has its answer
                await asyncio.sleep(0.02)
                if len(got) == 2 and push.pushed == 2:
                    break
        finally:
            await push.close()
        return push

    push = asyncio.run(run())
    assert [path for path, _ in got] == ["/api/v2/alerts"] * 2
    assert [(a["labels"]["node"], a["endsAt"]) for a in got[0][1]] == [
        ("n1", "2023-11-14T22:17:20.000Z")
    ]
    assert got[1][1][0]["endsAt"] == "2023-11-14T22:13:20.000Z"
    assert push.pushed == 2
    notifier = health.view().parts["notifier"]
    assert not notifier.ok and "ConnectError" in notifier.detail
