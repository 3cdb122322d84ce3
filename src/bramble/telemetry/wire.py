"""Telemetry wire format v1: what a datagram holds, its limits, and the signature. Pure.

The object keeps the original daemon's five keys at top level with their original meaning,
so the original listeners keep working. Signing signs the exact bytes: the object without
`sig` is serialised to B (ending in `}`), and `,"sig":"hmac-sha256:<keyid>:<hex>"` is
spliced in before the closing brace. `encode` writes datagrams (the agent), `decode` reads
and verifies them (the master).

This module is imported by the agent that runs on every board, so it stays small: no
`typing`, `json` or `hashlib` at import time (together a quarter of the agent's memory).
"""

from __future__ import annotations

from collections import namedtuple

try:  # the built-in SHA-256 keeps the agent free of OpenSSL's few MiB of resident memory
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import sha256

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (2 MiB)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NamedTuple

VERSION = 1
MAX_DATAGRAM = 1400
ORIGINAL_KEYS = ("cpufreq", "cputemp", "cpuusage", "loadavg", "meminfo")
SIG_MARK = b',"sig":"'
SIG_SCHEME = "hmac-sha256"
MAX_CORES = 128
MAX_IFACES = 8
MAX_MEMINFO = 16
MAX_NAME = 63
MAX_KEY_ID = 32
MAX_FS = 4  # filesystems sent: the first real ones of the mount table
MAX_MOUNT = 48  # characters of a mount point sent (printable ASCII, no space, quote or backslash)
MAX_MODEL = 64  # characters of the board model sent (printable ASCII, no quote or backslash)
# The process datagram: the top TOP_PROCS processes by CPU and the top TOP_PROCS by memory,
# one row each (a process in both once), names cut to MAX_PROC_NAME bytes as the kernel's
# comm is; each round reads at most MAX_PROCS_READ processes.
TOP_PROCS = 5
MAX_PROCS = 2 * TOP_PROCS
MAX_PROC_NAME = 15
MAX_PROCS_READ = 4096
MAX_PID = 2**22  # PID_MAX_LIMIT
MAX_PROC_CPU = 1_000_000.0  # percent of one core: a process past it is sent at it
LEGACY_INTERVAL = 2.0  # the original C daemon sends every 2 s
KEY_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

REASONS = (
    "oversize",
    "not_utf8",
    "not_json",
    "bad_shape",
    "bad_value",
    "bad_text",
    "unsigned",
    "bad_signature",
    "unknown_key",
    "clock_skew",
)


# What each number can be: a datagram with a value outside these (or not finite) is refused
# as `bad_value`, whatever its signature, so nothing unbounded reaches history, the API,
# /metrics or the event stream. Counts are what their kernel counters can hold.
RANGES = {
    "cpufreq": (0, 1_000_000),  # MHz
    "cputemp": (-273.15, 1000.0),  # degrees Celsius
    "cpuusage": (0, 1),  # busy fraction; each of `cores` too
    "loadavg": (0, 1_000_000),
    "meminfo": (0, 2**63 - 1),  # kB
    "disk": (0, 2**64 - 1),  # bytes
    "net": (0, 2**64 - 1),  # bytes since boot, per direction
    "uptime": (0, 1e10),  # seconds
    "ts": (0, 1e11),  # seconds since the epoch
    "interval": (0.001, 3600),  # seconds
    "boot": (0, 2**63 - 1),
    "seq": (0, 2**63 - 1),
    "throttled": (0, 2**32 - 1),  # the firmware's flags, a 32-bit word
    "swap": (0, 2**64 - 1),  # pages swapped in, out since boot
    "diskio": (0, 2**64 - 1),  # bytes read, written since boot
    "fs": (0, 2**64 - 1),  # bytes
    "pid": (1, MAX_PID),
    "cpu": (0, MAX_PROC_CPU),  # percent of one core (a busy process on 4 cores: up to 400)
    "rss": (0, 2**63 - 1),  # bytes
}
# Strings: node names as MAX_NAME says; interface names as the kernel allows them (IFNAMSIZ);
# meminfo and disk keys short. All printable: no control characters, no lone surrogates.
MAX_IFNAME = 15
MAX_FIELD = 32


class Rejected(Exception):
    """A datagram that must not be accepted; `reason` is one of REASONS (or the caller's)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


if TYPE_CHECKING:

    class Sample(NamedTuple):
        """What a node measured in one interval."""

        cpufreq: int
        cputemp: float
        cpuusage: float
        loadavg: tuple[float, float, float]
        meminfo: dict[str, int]
        cores: tuple[float, ...] = ()
        disk: dict[str, int] = {}  # noqa: RUF012
        net: dict[str, tuple[int, int]] = {}  # noqa: RUF012
        uptime: float = 0.0
        model: str | None = None
        throttled: int | None = None
        swap: tuple[int, int] | None = None
        diskio: tuple[int, int] | None = None
        fs: dict[str, tuple[int, int, int]] = {}  # noqa: RUF012

    class Proc(NamedTuple):
        """One process of a process datagram."""

        name: str
        pid: int
        cpu: float  # percent of one core, over the agent's last N intervals
        rss: int  # bytes

    class ProcsPacket(NamedTuple):
        """A decoded, verified process datagram."""

        node: str
        boot: int
        seq: int
        ts: float
        procs: tuple[Proc, ...]
        key_id: str | None

    class Packet(NamedTuple):
        """A decoded, verified datagram."""

        node: str
        boot: int
        seq: int
        ts: float
        interval: float
        sample: Sample
        signed: bool
        key_id: str | None

else:  # the same tuples without importing `typing` (2 MiB) into the agent
    Sample = namedtuple(
        "Sample",
        "cpufreq cputemp cpuusage loadavg meminfo cores disk net uptime "
        "model throttled swap diskio fs",
        defaults=((), {}, {}, 0.0, None, None, None, None, {}),
    )
    Sample.__doc__ = "What a node measured in one interval."
    Packet = namedtuple("Packet", "node boot seq ts interval sample signed key_id")
    Proc = namedtuple("Proc", "name pid cpu rss")
    ProcsPacket = namedtuple("ProcsPacket", "node boot seq ts procs key_id")
    Packet.__doc__ = "A decoded, verified datagram."


class Signer:
    """HMAC-SHA256 with one key, its padded inner and outer states computed once."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, constructor: Callable[[bytes], Any] = sha256) -> None:
        if len(key) > 64:
            key = sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = constructor(bytes(b ^ 0x36 for b in key))
        self._outer = constructor(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, message: bytes) -> str:
        """HMAC-SHA256 of MESSAGE, in hex."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return str(outer.hexdigest())
