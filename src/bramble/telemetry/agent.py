"""The agent's send loop: the only place in telemetry with a socket.

`bramble agent` validates the spec with the full model, then replaces itself (exec) with a
lean interpreter (`python -S`, no site hooks) that imports only a few standard modules and the
sampler and wire modules, so what runs on every board for months stays small. The telemetry
key is never on a command line: it reaches the lean process through an inherited pipe.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, NamedTuple

from bramble.telemetry.sample import Sampler
from bramble.telemetry.wire import encode

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger("bramble.agent")
BOOT_ENV = "BRAMBLE_BOOT_ID"


class AgentConfig(NamedTuple):
    """Everything the send loop needs, resolved from the spec."""

    node: str
    group: str
    port: int
    interval: float
    targets: tuple[tuple[str, int], ...] = ()
    interface: str = ""
    ttl: int = 1
    key_id: str = ""
    key: bytes = b""
    boot: int = 0
    limit: int = 0


def _targets(unicast: list[str], port: int) -> list[str]:
    """Unicast targets as 'host:port', the spec's port where a target names none."""
    return [t if ":" in t else f"{t}:{port}" for t in unicast]


def run_from_cli(
    spec_path: Path | None,
    *,
    node_name: str | None,
    interval: float | None,
    count: int,
    boot_id: int | None = None,
) -> None:
    """Validate the spec, then exec the lean agent with the resolved settings."""
    from bramble.spec import find_spec_path, load_secrets, load_spec

    path = find_spec_path(spec_path)
    spec = load_spec(path)
    secrets = load_secrets(path)
    tel = spec.telemetry
    every = interval if interval is not None else tel.interval
    if every <= 0:
        from bramble.errors import BrambleError

        raise BrambleError("--interval must be more than 0 seconds")
    read_end, write_end = os.pipe()
    os.write(write_end, f"{secrets.telemetry_key_id}:{secrets.telemetry_key.hex()}".encode())
    os.close(write_end)
    os.set_inheritable(read_end, True)
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [
        sys.executable,
        "-S",
        "-c",
        f"import sys; sys.path.insert(0, {package_root!r}); "
        "from bramble.telemetry.agent import main; sys.exit(main())",
        "--node",
        node_name or socket.gethostname(),
        "--group",
        str(tel.group),
        "--port",
        str(tel.port),
        "--interval",
        repr(every),
        "--ttl",
        str(tel.ttl),
        "--interface",
        tel.interface,
        "--key-fd",
        str(read_end),
        "--count",
        str(count),
    ]
    for target in _targets(tel.unicast, tel.port):
        argv += ["--unicast", target]
    if boot_id is not None:
        argv += ["--boot", str(boot_id)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def read_key_fd(fd: int) -> tuple[str, bytes]:
    """The telemetry key id and key, as 'keyid:hex' from the pipe FD (then closed)."""
    with os.fdopen(fd, "rb") as pipe:
        key_id, _, key_hex = pipe.read(4096).decode().strip().partition(":")
    return key_id, bytes.fromhex(key_hex)


def read_key_file(secrets_file: str) -> tuple[str, bytes]:
    """The telemetry key id and key from a secrets file."""
    import tomllib

    with open(secrets_file, "rb") as f:
        tel = tomllib.load(f)["telemetry"]
    return str(tel["key_id"]), bytes.fromhex(tel["key"])


def open_socket(config: AgentConfig) -> socket.socket:
    """A UDP socket set up for the group: TTL, outgoing interface, loopback delivery."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, config.ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    if config.interface:
        sock.setsockopt(
            socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(config.interface)
        )
    sock.setblocking(False)
    return sock


class _Outage:
    """Logs a network outage once when it starts and once when it ends, not per datagram."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.failed = 0

    def failure(self, now: float, error: OSError, target: tuple[str, int]) -> None:
        self.failed += 1
        if self.since is None:
            self.since = now
            log.warning("cannot send to %s:%d: %s (will keep trying)", *target, error)

    def success(self, now: float) -> None:
        if self.since is not None:
            log.warning(
                "sending again after %.1f s (%d datagrams lost)", now - self.since, self.failed
            )
            self.since = None
            self.failed = 0


def run(config: AgentConfig) -> int:
    """Send one signed datagram per interval until SIGTERM/SIGINT or COUNT datagrams."""
    key_id, key = config.key_id, config.key
    sampler = Sampler()
    boot = config.boot or sampler.boot
    sock = open_socket(config)
    destinations = [(config.group, config.port), *config.targets]
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    outage = _Outage()
    seq = 0
    next_at = time.monotonic()
    while not stopping:
        sample = sampler.sample()
        seq += 1
        data = encode(
            sample,
            node=config.node,
            boot=boot,
            seq=seq,
            ts=time.time(),
            interval=config.interval,
            key=key,
            key_id=key_id,
        )
        sent = False
        for target in destinations:
            try:
                sock.sendto(data, target)
                sent = True
            except OSError as exc:
                outage.failure(time.monotonic(), exc, target)
        if sent:
            outage.success(time.monotonic())
        if config.limit and seq >= config.limit:
            break
        next_at += config.interval
        delay = next_at - time.monotonic()
        if delay < 0:
            # Fell behind (suspended, overloaded): skip the missed slots instead of bursting.
            next_at = time.monotonic()
            delay = 0
        if delay and not stopping:
            _sleep(delay)
    sock.close()
    sampler.close()
    return 0


def _sleep(seconds: float) -> None:
    # time.sleep restarts after a signal handler runs; select returns, so SIGTERM is prompt.
    select.select([], [], [], seconds)


def _parse(argv: list[str]) -> AgentConfig:
    parser = argparse.ArgumentParser(prog="bramble agent (lean)")
    parser.add_argument("--node", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--ttl", type=int, default=1)
    parser.add_argument("--interface", default="")
    key_from = parser.add_mutually_exclusive_group(required=True)
    key_from.add_argument("--key-fd", type=int, help="pipe to read 'keyid:hexkey' from")
    key_from.add_argument("--secrets", help="bramble.secrets.toml to read the key from")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--unicast", action="append", default=[])
    parser.add_argument("--boot", type=int, default=int(os.environ.get(BOOT_ENV, "0") or 0))
    args = parser.parse_args(argv)
    if args.key_fd is not None:
        key_id, key = read_key_fd(args.key_fd)
    else:
        key_id, key = read_key_file(args.secrets)
    targets = []
    for target in args.unicast:
        host, _, port = target.rpartition(":")
        targets.append((host, int(port)))
    return AgentConfig(
        node=args.node,
        group=args.group,
        port=args.port,
        interval=args.interval,
        targets=tuple(targets),
        interface=args.interface,
        ttl=args.ttl,
        key_id=key_id,
        key=key,
        boot=args.boot,
        limit=args.count,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the lean agent process."""
    logging.basicConfig(level=logging.INFO, format="bramble agent: %(message)s")
    try:
        config = _parse(sys.argv[1:] if argv is None else argv)
        return run(config)
    except (OSError, KeyError, ValueError) as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
