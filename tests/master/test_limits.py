"""The HTTP limits on their own, in front of a small app served by a real uvicorn."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from bramble_testing import wait_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bramble.demo import free_port
from bramble.master.limits import (
    BodyLimit,
    HostCheck,
    StreamResponse,
    protocol_with_header_timeout,
    refused,
)


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


async def forever() -> AsyncIterator[bytes]:
    while True:
        yield b"data: " + b"x" * 65536 + b"\n\n"
        await asyncio.sleep(0)


async def stream(request: Request) -> StreamResponse:
    return StreamResponse(forever(), stall=0.5)


@pytest.fixture
def server() -> Iterator[str]:
    app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/stream", stream)])
    wrapped = HostCheck(BodyLimit(app, idle=0.5), ["master", "master.cluster"])
    port = free_port()
    config = uvicorn.Config(
        wrapped,
        host="127.0.0.1",
        port=port,
        log_level="critical",
        http=protocol_with_header_timeout(0.5),
        lifespan="off",
    )
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    wait_for(lambda: served.started, 10, "the server")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        served.should_exit = True
        thread.join(10)


def test_host_names_and_addresses_pass_others_do_not(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    for host in ("master", f"master.cluster:{port}", "127.0.0.1", f"[::1]:{port}", "10.0.0.1"):
        assert httpx.post(server + "/echo", headers={"Host": host}).text == "0", host
    for host in ("evil.example", f"master.evil.example:{port}", "master:1:2", ""):
        response = httpx.post(server + "/echo", headers={"Host": host})
        assert response.status_code == 400, host


def test_bodies_are_capped_before_and_while_they_are_read(server: str) -> None:
    assert httpx.post(server + "/echo", content=b"x" * 1000).text == "1000"
    before = refused["body_too_large"]
    assert httpx.post(server + "/echo", content=b"x" * 70_000).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(100):
            yield b"x" * 1000

    assert httpx.post(server + "/echo", content=chunks()).status_code == 413
    assert refused["body_too_large"] == before + 2


def test_a_body_that_stalls_is_cut_off(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: master\r\nContent-Length: 10\r\n\r\nabc")
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 408")


def test_half_sent_headers_are_closed(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: mas")
            sock.settimeout(5)
        start = time.monotonic()
        for sock in socks:
            assert sock.recv(100) == b""  # closed by the server
        assert time.monotonic() - start < 4
        # an idle connection after an answer gets the same time for its next request
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: master\r\nContent-Length: 0\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(1000).startswith(b"HTTP/1.1 200")
            assert sock.recv(100) == b""
    finally:
        for sock in socks:
            sock.close()


def test_a_viewer_that_stops_reading_is_dropped(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    before = refused["stream_stalled"]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: master\r\n\r\n")
        time.sleep(2)  # read nothing: the server's writes back up, then it gives up
        wait_for(lambda: refused["stream_stalled"] > before, 10, "the stalled viewer dropped")
