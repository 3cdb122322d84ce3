"""A TCP forwarder from the root namespace into the lab master's namespace.

The rendered firewall lets only ssh in through the uplink, as on real hardware, so the lab does
not open the dashboard there. Instead this process binds its listening socket in the root
namespace, then moves itself into the master's network namespace: every connection it accepts
on the host is forwarded to the dashboard over the master's own loopback path.

Run: python -m bramble.lab.proxy LISTEN_HOST LISTEN_PORT NETNS TARGET_HOST TARGET_PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000


def enter_netns(name: str) -> None:
    """Move this (single-threaded) process into the named network namespace."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def serve(sock: socket.socket, host: str, port: int) -> None:
    """Forward every connection accepted on SOCK to HOST:PORT until SIGTERM."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, sock=sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Bind in the root namespace, enter the master's, forward."""
    args = sys.argv[1:] if argv is None else argv
    listen_host, listen_port, netns, target_host, target_port = args
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listen_host, int(listen_port)))
    sock.listen(128)
    enter_netns(netns)
    asyncio.run(serve(sock, target_host, int(target_port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
