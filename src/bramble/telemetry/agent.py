"""The agent's send loop: the only place in telemetry with a socket.

`bramble agent` loads and validates the spec with the full model, then replaces itself (exec) with a
lean interpreter (`python -S`, no site hooks) that imports only a few standard modules and the
sampler and wire modules, so what runs on every board for months stays small. The telemetry
key is never on a command line: it reaches the lean process through an inherited pipe.

The lean process then execs the compiled agent (agent.c: the program the wheel carries, or
built once per machine by `native`), which sends the same bytes for a fraction of the CPU
time. Where there is none and it cannot be built (no C compiler), or with
`engine = "python"`, the Python loop below runs instead. Either way it says once which.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # `signal` would import enum
import _socket  # `socket` would import enum, selectors and io wrappers
import os
import sys
import time

from bramble.telemetry.encode import Encoder
from bramble.telemetry.sample import ProcReader, Sampler

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (2 MiB)
if TYPE_CHECKING:
    from bramble.spec import Spec

BOOT_ENV = "BRAMBLE_BOOT_ID"
ENGINES = ("auto", "compiled", "python")
PROCS_EVERY = 30
"""Intervals between two process datagrams (0: none), by default."""
MAX_PROCS_EVERY = 1_000_000


def _log(message: str) -> None:
    """One line on stderr (the journal under systemd).

    The lean process does without `logging`: importing it costs 2.6 MiB, a sixth of the
    agent's whole memory budget, for the few lines the agent ever writes.
    """
    try:  # noqa: SIM105 - contextlib is one more import for the lean process
        os.write(2, f"bramble agent: {message}\n".encode(errors="replace"))
    except OSError:
        pass


class AgentConfig:
    """Everything the send loop needs, resolved from the spec."""

    __slots__ = (
        "boot",
        "engine",
        "group",
        "interface",
        "interval",
        "key",
        "key_id",
        "limit",
        "node",
        "port",
        "procs_every",
        "sysfs",
        "targets",
        "ttl",
    )

    def __init__(
        self,
        node: str,
        group: str,
        port: int,
        interval: float,
        targets: tuple[tuple[str, int], ...] = (),
        interface: str = "",
        ttl: int = 1,
        key_id: str = "",
        key: bytes = b"",
        boot: int = 0,
        limit: int = 0,
        engine: str = "auto",
        sysfs: str = "/sys",
        procs_every: int = PROCS_EVERY,
    ) -> None:
        self.node = node
        self.group = group
        self.port = port
        self.interval = interval
        self.targets = targets
        self.interface = interface
        self.ttl = ttl
        self.key_id = key_id
        self.key = key
        self.boot = boot
        self.limit = limit
        self.engine = engine
        self.sysfs = sysfs
        self.procs_every = procs_every


def _targets(unicast: list[str], port: int) -> list[str]:
    """Unicast targets as 'host:port', the spec's port where a target names none."""
    return [t if ":" in t else f"{t}:{port}" for t in unicast]


def lean_argv(
    spec: Spec,
    *,
    node: str,
    key_args: list[str],
    interval: float | None = None,
    boot: int | None = None,
    engine: str | None = None,
    sysfs: str | None = None,
    procs_every: int | None = None,
) -> list[str]:
    """The lean agent's command line for SPEC (KEY_ARGS: `--key-fd N` or `--secrets FILE`)."""
    tel = spec.telemetry
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [
        sys.executable, "-S", "-c",
        f"import sys; sys.path.insert(0, {package_root!r}); "
        "from bramble.telemetry.agent import main; sys.exit(main())",
        "--node", node,
        "--group", str(tel.group),
        "--port", str(tel.port),
        "--interval", repr(tel.interval if interval is None else interval),
        "--ttl", str(tel.ttl),
        "--interface", tel.interface,
        "--engine", engine or tel.engine,
        "--procs-every", str(tel.procs_every if procs_every is None else procs_every),
        *key_args,
    ]  # fmt: skip
    for target in _targets(tel.unicast, tel.port):
        argv += ["--unicast", target]
    if boot is not None:
        argv += ["--boot", str(boot)]
    if sysfs is not None:
        argv += ["--sys", sysfs]
    return argv


def exec_lean(
    spec: Spec,
    key_id: str,
    key: bytes,
    *,
    node_name: str | None,
    interval: float | None,
    count: int,
    boot_id: int | None = None,
    engine: str | None = None,
    procs_every: int | None = None,
) -> None:
    """Become the lean agent for SPEC, signing with KEY_ID and KEY (`bramble agent`, once it
    has loaded and checked the spec)."""
    from bramble.errors import BrambleError
    from bramble.spec import MAX_INTERVAL

    every = interval if interval is not None else spec.telemetry.interval
    if not 0 < every <= MAX_INTERVAL:
        raise BrambleError(f"--interval must be more than 0 and at most {MAX_INTERVAL} seconds")
    if engine is not None and engine not in ENGINES:
        raise BrambleError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if procs_every is not None and not 0 <= procs_every <= MAX_PROCS_EVERY:
        raise BrambleError(f"--procs-every must be 0 (off) to {MAX_PROCS_EVERY} intervals")
    read_end = key_pipe(key_id, key)
    argv = lean_argv(
        spec,
        node=node_name or _socket.gethostname(),
        interval=every,
        key_args=["--key-fd", str(read_end)],
        boot=boot_id,
        engine=engine,
        procs_every=procs_every,
    )
    argv += ["--count", str(count)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def prepare_compiled() -> str:
    """The compiled agent's path: the package's, else built now if this machine has none yet
    (for image builds)."""
    from bramble.errors import BrambleError
    from bramble.telemetry import native

    try:
        return native.locate()[0]
    except native.Unavailable as exc:
        raise BrambleError(f"cannot build the compiled agent: {exc}") from None


def key_pipe(key_id: str, key: bytes) -> int:
    """An inheritable pipe's read end holding 'keyid:hex', for the process this one execs."""
    read_end, write_end = os.pipe()
    os.write(write_end, f"{key_id}:{key.hex()}".encode())
    os.close(write_end)
    os.set_inheritable(read_end, True)
    return read_end


def compiled_argv(config: AgentConfig, key_fd: int) -> list[str]:
    """The compiled agent's command line for CONFIG, its key on the pipe KEY_FD."""
    argv = [
        "bramble-agent",
        "--node", config.node,
        "--group", config.group,
        "--port", str(config.port),
        "--interval", repr(config.interval),
        "--ttl", str(config.ttl),
        "--interface", config.interface,
        "--key-fd", str(key_fd),
        "--count", str(config.limit),
        "--boot", str(config.boot),
        "--procs-every", str(config.procs_every),
    ]  # fmt: skip
    for host, port in config.targets:
        argv += ["--unicast", f"{host}:{port}"]
    if config.sysfs != "/sys":
        argv += ["--sys", config.sysfs]
    return argv


def exec_compiled(config: AgentConfig) -> None:
    """Become the compiled agent, saying once which one; return (having said why) only if
    `auto` finds none."""
    from bramble.telemetry import native

    try:
        path, origin, refused = native.locate()
    except native.Unavailable as exc:
        if config.engine == "compiled":
            raise native.Unavailable(f"the compiled agent is not available: {exc}") from None
        _log(f"the compiled agent is not available: {exc}; running the Python agent")
        return
    key_fd = key_pipe(config.key_id, config.key)
    _log(f"running the compiled agent {native.describe(path, origin, refused)}")
    try:
        os.execv(path, compiled_argv(config, key_fd))
    except OSError as exc:  # a damaged program (a full disk during the build, say)
        os.close(key_fd)
        if config.engine == "compiled":
            raise native.Unavailable(f"cannot run {path}: {exc}") from None
        _log(f"cannot run {path}: {exc}; running the Python agent")


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


def open_socket(config: AgentConfig) -> _socket.socket:
    """A UDP socket set up for the group: TTL, outgoing interface, loopback delivery."""
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_MULTICAST_TTL, config.ttl)
        # Loop on: the master runs an agent too, and the loopback setup needs it.
        sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_MULTICAST_LOOP, 1)
        if config.interface:
            sock.setsockopt(
                _socket.IPPROTO_IP, _socket.IP_MULTICAST_IF, _socket.inet_aton(config.interface)
            )
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def sent_line(config: AgentConfig, sent: int, failures: int) -> str:
    """What `--count N` did, said once at the end (the compiled agent says the same)."""
    line = f"bramble agent: sent {sent} datagrams as {config.node} to {config.group}:{config.port}"
    if config.targets:
        plural = "" if len(config.targets) == 1 else "s"
        line += f" and {len(config.targets)} unicast target{plural}"
    if failures:
        line += f" ({failures} sends failed)"
    return line


class _Outage:
    """Logs a destination's outage once when it starts and once when it ends, not per datagram."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = f"{target[0]}:{target[1]}"
        self.since: float | None = None
        self.failed = 0
        self.total = 0

    def failure(self, now: float, error: OSError) -> None:
        self.failed += 1
        self.total += 1
        if self.since is None:
            self.since = now
            _log(f"cannot send to {self.target}: {error} (will keep trying)")

    def success(self, now: float) -> None:
        if self.since is not None:
            _log(
                f"sending to {self.target} again after {now - self.since:.1f} s "
                f"({self.failed} sends failed)"
            )
            self.since = None
            self.failed = 0


def run(config: AgentConfig) -> int:
    """Send one signed datagram per interval until SIGTERM/SIGINT or COUNT intervals, and
    every `procs_every` intervals a process datagram (from the second reading on: CPU
    shares need two)."""
    sampler = Sampler(sysfs=config.sysfs)
    encoder = Encoder(
        node=config.node,
        boot=config.boot or sampler.boot,
        interval=config.interval,
        key=config.key,
        key_id=config.key_id,
    )
    sock = open_socket(config)
    destinations = [
        (target, _Outage(target)) for target in [(config.group, config.port), *config.targets]
    ]
    # The interval timer paces the loop and the stop signals end it, all three blocked and
    # taken by sigwait: one system call per interval, no handler, no wake-up pipe. The
    # kernel merges timer signals that were not taken in time: a loop that fell behind
    # (suspended, overloaded) skips the missed slots rather than bursting.
    alarm = _signal.SIGALRM
    signals = {alarm, _signal.SIGTERM, _signal.SIGINT}
    old_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, signals)
    # seq starts at the milliseconds since boot and grows by one per datagram, so an agent
    # restarted within the same boot (a crash, an upgrade) carries on above every number it
    # sent before, and the master's replay window keeps accepting it.
    seq = int(time.clock_gettime(time.CLOCK_BOOTTIME) * 1000)
    intervals = sent = 0
    every = config.procs_every
    reader = ProcReader() if every else None
    interval = config.interval
    # The first CPU figures cover this short pause, not the few microseconds since start-up.
    _signal.setitimer(_signal.ITIMER_REAL, min(interval, 0.2), interval)
    sigwait, sample, encode, wall_clock = _signal.sigwait, sampler.sample, encoder.encode, time.time
    try:
        while sigwait(signals) == alarm:
            seq += 1
            now = wall_clock()
            datagrams = [encode(sample(), seq, now)]
            if reader is not None and intervals % every == 0:
                procs = reader.read(sampler.jiffies, sampler.cores)
                if procs is not None:
                    seq += 1
                    datagrams.append(encoder.encode_procs(procs, seq, now))
            intervals += 1
            for data in datagrams:
                sent += 1
                for target, outage in destinations:
                    try:
                        sock.sendto(data, target)
                    except OSError as exc:
                        outage.failure(time.monotonic(), exc)
                        continue
                    if outage.since is not None:
                        outage.success(time.monotonic())
            if intervals == config.limit:
                failures = sum(outage.total for _target, outage in destinations)
                line = sent_line(config, sent, failures)
                os.write(1, f"{line}\n".encode(errors="replace"))
                break
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        # An alarm still pending must not reach its default action (exit) when unblocked.
        _signal.signal(alarm, _signal.SIG_IGN)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old_mask)
        sock.close()
        sampler.close()
        if reader is not None:
            reader.close()
    return 0


_OPTIONS = {
    "--node": "node",
    "--group": "group",
    "--port": "port",
    "--interval": "interval",
    "--ttl": "ttl",
    "--interface": "interface",
    "--key-fd": "key_fd",
    "--secrets": "secrets",
    "--count": "count",
    "--unicast": "unicast",
    "--boot": "boot",
    "--engine": "engine",
    "--sys": "sysfs",
    "--procs-every": "procs_every",
}
USAGE = (
    "usage: python -m bramble.telemetry.agent --node NAME --group ADDR --port N "
    "--interval S (--key-fd FD | --secrets FILE) [--ttl N] [--interface ADDR] "
    "[--unicast HOST:PORT]... [--count N] [--boot N] [--engine auto|compiled|python] "
    "[--procs-every N] [--sys DIR]"
)


def _parse(argv: list[str]) -> AgentConfig:
    """The lean process's arguments (argparse would cost more memory than the sampler)."""
    values: dict[str, str] = {}
    unicast: list[str] = []
    it = iter(argv)
    for flag in it:
        name = _OPTIONS.get(flag)
        value = next(it, None)
        if name is None or value is None:
            raise ValueError(f"bad argument {flag!r}; {USAGE}")
        if name == "unicast":
            unicast.append(value)
        else:
            values[name] = value
    missing = [
        f for f in ("--node", "--group", "--port", "--interval") if _OPTIONS[f] not in values
    ]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}; {USAGE}")
    if "key_fd" in values:
        key_id, key = read_key_fd(int(values["key_fd"]))
    elif "secrets" in values:
        key_id, key = read_key_file(values["secrets"])
    else:
        raise ValueError(f"give --key-fd or --secrets; {USAGE}")
    interval = float(values["interval"])
    if not 0 < interval <= 3600:
        raise ValueError("--interval must be within (0, 3600] seconds")
    engine = values.get("engine", "auto")
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    procs_every = int(values.get("procs_every", str(PROCS_EVERY)))
    if not 0 <= procs_every <= MAX_PROCS_EVERY:
        raise ValueError(f"--procs-every must be 0 (off) to {MAX_PROCS_EVERY} intervals")
    targets = []
    for target in unicast:
        host, _, port = target.rpartition(":")
        targets.append((host, int(port)))
    return AgentConfig(
        node=values["node"],
        group=values["group"],
        port=int(values["port"]),
        interval=interval,
        targets=tuple(targets),
        interface=values.get("interface", ""),
        ttl=int(values.get("ttl", "1")),
        key_id=key_id,
        key=key,
        boot=int(values.get("boot") or os.environ.get(BOOT_ENV) or 0),
        limit=int(values.get("count", "0")),
        engine=engine,
        sysfs=values.get("sysfs", "/sys"),
        procs_every=procs_every,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the lean agent process; exit code 2 on bad settings."""
    try:
        config = _parse(sys.argv[1:] if argv is None else argv)
        # A name the master would refuse fails here, once, not in every datagram.
        Encoder(node=config.node, boot=0, interval=config.interval, key=config.key,
                key_id=config.key_id)  # fmt: skip
        if config.engine != "python":
            exec_compiled(config)
        else:
            _log("running the Python agent (engine = python)")
        return run(config)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        _log(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
