"""Checking, before anything starts, that the master can listen where it is told to."""

from __future__ import annotations

import errno
import socket

from bramble.errors import BrambleError


def check_listen(host: str, port: int, source: str) -> None:
    """BrambleError in one line unless HOST:PORT can be listened on here.

    SOURCE says where the address came from (an option or a spec key), so the message can
    say what to change. uvicorn would otherwise log the bare errno and exit 3, after the
    collector and history had started.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BrambleError(
            f"cannot serve the dashboard on {host}:{port}: {exc.strerror} "
            f"(from {source}): give an address of this host, or 127.0.0.1 for this machine only"
        ) from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise BrambleError(_explain(host, port, source, exc)) from None


def _explain(host: str, port: int, source: str, exc: OSError) -> str:
    where = f"cannot serve the dashboard on {host}:{port}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: {host} is not an address of this host (from {source}): "
            "run the master on the machine that has it, or pass --bind with one of this "
            "host's addresses (`ip -br addr`), 127.0.0.1 for this machine only"
        )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: port {port} is in use (from {source}; another master?): stop it, "
            "or pass --port"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: ports below 1024 need root (from {source}): pass --port 8080"
    return f"{where}: {exc.strerror} (from {source})"
