"""Telemetry wire format v1: encode, sign, decode and verify datagrams. Pure, stdlib only.

The object keeps the original daemon's five keys at top level with their original meaning,
so the original listeners keep working. Signing signs the exact bytes: the object without
`sig` is serialised to B (ending in `}`), and `,"sig":"hmac-sha256:<keyid>:<hex>"` is
spliced in before the closing brace.
"""

from __future__ import annotations

import json
from _operator import _compare_digest as compare_digest  # hmac's, without OpenSSL
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

try:  # the built-in SHA-256 keeps the agent free of OpenSSL's few MiB of resident memory
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import sha256

if TYPE_CHECKING:
    from hashlib import _Hash

VERSION = 1
MAX_DATAGRAM = 1400
ORIGINAL_KEYS = ("cpufreq", "cputemp", "cpuusage", "loadavg", "meminfo")
SIG_MARK = b',"sig":"'
SIG_SCHEME = "hmac-sha256"
MAX_CORES = 128
MAX_IFACES = 8
MAX_MEMINFO = 16
MAX_NAME = 63

REASONS = (
    "oversize",
    "not_utf8",
    "not_json",
    "bad_shape",
    "unsigned",
    "bad_signature",
    "unknown_key",
    "clock_skew",
)


class Rejected(Exception):
    """A datagram that must not be accepted; `reason` is one of REASONS (or the caller's)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class Sample(NamedTuple):
    """What a node measured in one interval."""

    cpufreq: int
    cputemp: float
    cpuusage: float
    loadavg: tuple[float, float, float]
    meminfo: dict[str, int]
    cores: tuple[float, ...] = ()
    disk: dict[str, int] = {}  # noqa: RUF012 - never mutated; NamedTuple needs a plain default
    net: dict[str, tuple[int, int]] = {}  # noqa: RUF012
    uptime: float = 0.0


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


class Signer:
    """HMAC-SHA256 with one key, its padded inner and outer states computed once."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner: _Hash = sha256(bytes(b ^ 0x36 for b in key))
        self._outer: _Hash = sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, message: bytes) -> str:
        """HMAC-SHA256 of MESSAGE, in hex."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


_signers: dict[bytes, Signer] = {}


def _signer(key: bytes) -> Signer:
    signer = _signers.get(key)
    if signer is None:
        if len(_signers) > 64:
            _signers.clear()
        signer = _signers[key] = Signer(key)
    return signer


def _body(sample: Sample, node: str, boot: int, seq: int, ts: float, interval: float) -> bytes:
    obj = {
        "cpufreq": int(sample.cpufreq),
        "cputemp": round(sample.cputemp, 1),
        "cpuusage": round(sample.cpuusage, 4),
        "loadavg": [round(x, 2) for x in sample.loadavg],
        "meminfo": dict(list(sample.meminfo.items())[:MAX_MEMINFO]),
        "v": VERSION,
        "node": node,
        "boot": boot,
        "seq": seq,
        "ts": round(ts, 3),
        "interval": interval,
        "cores": [round(c, 3) for c in sample.cores[:MAX_CORES]],
        "disk": sample.disk,
        "net": {k: list(v) for k, v in list(sample.net.items())[:MAX_IFACES]},
        "uptime": round(sample.uptime, 1),
    }
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def sign(body: bytes, key: bytes, key_id: str) -> bytes:
    """Splice an HMAC-SHA256 signature of BODY (a JSON object's bytes) in as its last key."""
    digest = _signer(key).hexdigest(body)
    return body[:-1] + f',"sig":"{SIG_SCHEME}:{key_id}:{digest}"}}'.encode()


def encode(
    sample: Sample,
    *,
    node: str,
    boot: int,
    seq: int,
    ts: float,
    interval: float,
    key: bytes | None,
    key_id: str,
) -> bytes:
    """One datagram for SAMPLE, signed with KEY when given; always at most MAX_DATAGRAM bytes."""
    body = _body(sample, node, boot, seq, ts, interval)
    if len(body) + 100 > MAX_DATAGRAM:
        # Many cores: keep the totals, drop the per-core detail rather than exceed one packet.
        body = _body(
            Sample(
                sample.cpufreq,
                sample.cputemp,
                sample.cpuusage,
                sample.loadavg,
                sample.meminfo,
                (),
                sample.disk,
                dict(list(sample.net.items())[:2]),
                sample.uptime,
            ),
            node,
            boot,
            seq,
            ts,
            interval,
        )
    return sign(body, key, key_id) if key is not None else body


def _num(value: object) -> float:
    if type(value) is float:
        if value - value != 0.0:  # NaN or infinity
            raise Rejected("bad_shape", "non-finite number")
        return value
    if type(value) is int:
        return float(value)
    raise Rejected("bad_shape", "expected a number")


def _int(value: object) -> int:
    if type(value) is int and value >= 0:
        return value
    raise Rejected("bad_shape", "expected a non-negative integer")


def _counts(value: object, limit: int, what: str) -> dict[str, int]:
    if (
        type(value) is not dict
        or len(value) > limit
        or not all(type(v) is int and v >= 0 for v in value.values())
    ):
        raise Rejected("bad_shape", f"{what} must be an object of non-negative integers")
    return value


def _fractions(value: object) -> tuple[float, ...]:
    if type(value) is not list or len(value) > MAX_CORES:
        raise Rejected("bad_shape", "cores must be a list of fractions")
    if not all((type(c) is float or type(c) is int) and 0 <= c <= 1 for c in value):
        raise Rejected("bad_shape", "cores must be fractions within 0..1")
    return tuple(value)


def _sample(obj: dict[str, object]) -> Sample:
    load = obj.get("loadavg")
    if type(load) is not list or len(load) != 3:
        raise Rejected("bad_shape", "loadavg must be a list of 3 numbers")
    usage = _num(obj.get("cpuusage"))
    if not 0.0 <= usage <= 1.0:
        raise Rejected("bad_shape", "cpuusage must be within 0..1")
    net_raw = obj.get("net", {})
    if type(net_raw) is not dict or len(net_raw) > 32:
        raise Rejected("bad_shape", "net must be an object")
    net: dict[str, tuple[int, int]] = {}
    for k, v in net_raw.items():
        if type(v) is not list or len(v) != 2:
            raise Rejected("bad_shape", "net values must be [rx, tx]")
        net[k] = (_int(v[0]), _int(v[1]))
    return Sample(
        cpufreq=int(_num(obj.get("cpufreq", 0))),
        cputemp=_num(obj.get("cputemp", 0)),
        cpuusage=usage,
        loadavg=(_num(load[0]), _num(load[1]), _num(load[2])),
        meminfo=_counts(obj.get("meminfo"), 64, "meminfo"),
        cores=_fractions(obj.get("cores", [])),
        disk=_counts(obj.get("disk", {}), 8, "disk"),
        net=net,
        uptime=_num(obj.get("uptime", 0)),
    )


def decode(
    data: bytes,
    keys: Mapping[str, bytes],
    *,
    allow_unsigned: bool,
    source: str,
    now: float = 0.0,
) -> Packet:
    """Decode and verify DATA from SOURCE; raise Rejected with a reason for anything bad.

    Unsigned datagrams (the original C daemon's: five keys, maybe NUL-padded) pass only when
    ALLOW_UNSIGNED; they are named by SOURCE and stamped with NOW.
    """
    if len(data) > MAX_DATAGRAM:
        raise Rejected("oversize", f"{len(data)} bytes")
    data = data.rstrip(b"\x00")
    signed_body: bytes | None = None
    key_id: str | None = None
    cut = data.rfind(SIG_MARK)
    if cut != -1:
        tail = data[cut + len(SIG_MARK) :]
        if not tail.endswith(b'"}'):
            raise Rejected("bad_signature", "signature is not the last key")
        parts = tail[:-2].split(b":")
        if len(parts) != 3 or parts[0] != SIG_SCHEME.encode():
            raise Rejected("bad_signature", "malformed signature")
        try:
            key_id = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise Rejected("bad_signature", "malformed key id") from None
        key = keys.get(key_id)
        if key is None:
            raise Rejected("unknown_key", key_id[:32])
        signed_body = data[:cut] + b"}"
        expected = _signer(key).hexdigest(signed_body).encode()
        if not compare_digest(expected, parts[2]):
            raise Rejected("bad_signature", "signature does not verify")
    elif not allow_unsigned:
        raise Rejected("unsigned", "unsigned datagram and telemetry.allow_unsigned is false")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("not_utf8") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise Rejected("not_json") from None
    if not isinstance(obj, dict):
        raise Rejected("bad_shape", "not a JSON object")
    sample = _sample(obj)
    if signed_body is None:
        return Packet(source, 0, 0, now, 0.0, sample, False, None)
    node = obj.get("node")
    if not isinstance(node, str) or not 0 < len(node) <= MAX_NAME or not node.isprintable():
        raise Rejected("bad_shape", "node must be a short printable name")
    interval = _num(obj.get("interval"))
    if not 0 < interval <= 3600:
        raise Rejected("bad_shape", "interval must be within (0, 3600] seconds")
    if obj.get("v") != VERSION:
        raise Rejected("bad_shape", "unknown format version")
    return Packet(
        node, _int(obj.get("boot")), _int(obj.get("seq")), _num(obj.get("ts")), interval,
        sample, True, key_id,
    )  # fmt: skip


def check_clock(packet: Packet, now: float, window: float) -> None:
    """Reject PACKET if its sender's clock is more than WINDOW seconds from NOW."""
    if abs(packet.ts - now) > window:
        raise Rejected("clock_skew", f"{packet.ts - now:+.1f} s")
