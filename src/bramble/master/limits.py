"""What bounds the master's HTTP side, so that nobody, token or not, can exhaust it.

- `HostCheck`: the `Host` header names the master (its names, or any IP address), so a page
  on another site cannot read the API through DNS rebinding.
- `BodyLimit`: request bodies are capped by route before they are read (`Content-Length`
  first, then as they arrive) and must keep coming (a body that stalls is cut off).
- `protocol_with_header_timeout`: a connection must send its request headers within a few
  seconds of opening, or of its previous answer: half-sent requests (slowloris) are closed.
- `Gate`: at most so many of a kind at once (event streams, long polls); past it, 503.
- `StreamResponse`: an event stream whose viewer stops reading is closed, not buffered for.
- `raise_open_files`: the soft limit on open files up to the hard one, so the master's caps,
  not the process's, decide how many clients it serves.

All count what they refuse, for /api/stats and /metrics.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from collections import Counter
from collections.abc import Iterable, MutableMapping
from typing import Any

from fastapi.responses import Response

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Any
Send = Any
ASGIApp = Any

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send a request's headers."""
BODY_IDLE = 10.0
"""Seconds a request body may pause before the request is cut off."""
DEFAULT_BODY = 64 * 1024
"""The largest request body any route takes unless it says otherwise."""
BODY_LIMITS = (("/api/jobs", 16 * 1024), ("/api/exec", 16 * 1024))
"""Smaller caps by path prefix: job submissions and exec requests are a few lines."""

refused: Counter[str] = Counter()
"""Requests refused, by reason: host, body_too_large, body_stalled, header_timeout, busy."""


def _plain(status: int, text: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> list[Message]:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


async def _answer(send: Send, status: int, text: str, **extra: str) -> None:
    headers = [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    for message in _plain(status, text, headers):
        await send(message)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


class HostCheck:
    """Refuse (400) a request whose Host is not one of NAMES nor an IP address."""

    def __init__(self, app: ASGIApp, names: Iterable[str]) -> None:
        self.app = app
        self.names = frozenset(n.lower().rstrip(".") for n in names if n)

    def allowed(self, host: str) -> bool:
        """Whether HOST (a Host header's value, maybe with a port) names this master."""
        host = host.strip().lower()
        if host.startswith("["):  # [::1]:8080
            end = host.find("]")
            name = host[1:end] if end != -1 else ""
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return name.rstrip(".") in self.names
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = _header(scope, b"host")
            if host is None or not self.allowed(host.decode("latin-1")):
                refused["host"] += 1
                if scope["type"] == "http":
                    await _answer(send, 400, "the Host header does not name this master")
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)


def body_limit(path: str) -> int:
    """The largest body a request for PATH may send."""
    for prefix, limit in BODY_LIMITS:
        if path.startswith(prefix):
            return limit
    return DEFAULT_BODY


class BodyLimit:
    """Refuse (413) a body past `body_limit`, from its Content-Length before reading it or as
    it arrives, and cut off one that stalls (408). The (small) body is read here, whole,
    before the app runs, so the app never waits on a slow sender."""

    def __init__(self, app: ASGIApp, *, idle: float = BODY_IDLE) -> None:
        self.app = app
        self.idle = idle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _header(scope, b"content-length") if scope["type"] == "http" else None
        chunked = scope["type"] == "http" and _header(scope, b"transfer-encoding") is not None
        if length is None and not chunked:
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        try:
            declared = int(length) if length is not None else 0
        except ValueError:
            declared = limit + 1
        if declared > limit:
            refused["body_too_large"] += 1
            await _answer(send, 413, f"request body over {limit} bytes")
            return
        body = b""
        more = True
        while more:
            try:
                message: Message = await asyncio.wait_for(receive(), self.idle)
            except TimeoutError:
                refused["body_stalled"] += 1
                await _answer(send, 408, "the request body stopped coming")
                return
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > limit:
                refused["body_too_large"] += 1
                await _answer(send, 413, f"request body over {limit} bytes")
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            message: Message = await receive()
            return message

        await self.app(scope, replay, send)


class Gate:
    """At most LIMIT of one kind at once (event streams, long polls)."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.inside = 0

    def enter(self) -> bool:
        """Take a place; False (counted) when all are taken."""
        if self.inside >= self.limit:
            refused[f"busy_{self.name}"] += 1
            return False
        self.inside += 1
        return True

    def leave(self) -> None:
        """Give the place back."""
        self.inside -= 1


STALL = 30.0
"""Seconds an event stream's viewer may go without taking what it is sent."""


class StreamResponse(Response):
    """A server-sent event stream of CHUNKS that ends when the viewer stops reading.

    Each write must be taken (by the socket, past its buffers) within STALL seconds; a
    viewer that reads nothing (a tab frozen in the background, or one who opens streams to
    hold the master's sockets) is closed, and its place taken back (ON_CLOSE).
    """

    media_type = "text/event-stream"

    def __init__(self, chunks: Any, *, stall: float = STALL, on_close: Any = None) -> None:
        self.chunks = chunks
        self.stall = stall
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.chunks:
                if gone.is_set():
                    break
                try:
                    await asyncio.wait_for(
                        send({"type": "http.response.body", "body": chunk, "more_body": True}),
                        self.stall,
                    )
                except TimeoutError:
                    refused["stream_stalled"] += 1
                    raise _Stalled from None
            else:
                await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            await _close(self.chunks)
            if self.on_close is not None:
                self.on_close()


class _Stalled(Exception):
    """Raised out of the app, so the server drops the connection of a viewer who stalled."""


class QuietStalls(logging.Filter):
    """Keep a stalled viewer's dropped connection out of uvicorn's error log (it is counted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Stalled))


async def _close(chunks: Any) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def protocol_with_header_timeout(timeout: float = HEADER_TIMEOUT) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection that does not finish sending a request's
    headers within TIMEOUT seconds of opening, or of its previous answer."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                refused["header_timeout"] += 1
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self.pipeline:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return Protocol


ENOUGH_FILES = 4096
"""Open files below which a few thousand idle or half-sent connections exhaust the master."""


def few_files(limit: int) -> str | None:
    """What to say when the master may open only LIMIT files (None when it is enough)."""
    if limit >= ENOUGH_FILES:
        return None
    return (
        f"the master may open only {limit} files (its hard limit): a few hundred idle or "
        "half-sent connections can keep other clients out; raise it (LimitNOFILE=65536, as "
        "the rendered unit sets, or `ulimit -Hn 65536` before starting it)"
    )


def raise_open_files() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # pragma: no cover - a container's own limits
            log.warning("cannot raise the open files limit from %d: %s", soft, exc)
            return soft
    return hard
