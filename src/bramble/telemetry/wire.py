"""Telemetry wire format v1: encode, sign, decode and verify datagrams. Pure, stdlib only.

The object keeps the original daemon's five keys at top level with their original meaning,
so the original listeners keep working. Signing signs the exact bytes: the object without
`sig` is serialised to B (ending in `}`), and `,"sig":"hmac-sha256:<keyid>:<hex>"` is
spliced in before the closing brace.

This module is imported by the agent that runs on every board, so it stays small: no
`typing`, `json` or `hashlib` at import time (together a quarter of the agent's memory).
Encoding writes the JSON itself; decoding imports the JSON scanner on first use.
"""

from __future__ import annotations

from _operator import _compare_digest as compare_digest  # hmac's, without OpenSSL
from collections import namedtuple

try:  # the built-in SHA-256 keeps the agent free of OpenSSL's few MiB of resident memory
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import sha256

try:
    from _json import encode_basestring_ascii as _quote
except ImportError:  # pragma: no cover - other interpreters
    from json.encoder import py_encode_basestring_ascii as _quote

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (2 MiB)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
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
_KEY_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

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
        "cpufreq cputemp cpuusage loadavg meminfo cores disk net uptime",
        defaults=((), {}, {}, 0.0),
    )
    Sample.__doc__ = "What a node measured in one interval."
    Packet = namedtuple("Packet", "node boot seq ts interval sample signed key_id")
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


_signers: dict[bytes, Signer] = {}
_verifiers: dict[bytes, Signer] = {}


def _signer(key: bytes) -> Signer:
    signer = _signers.get(key)
    if signer is None:
        if len(_signers) > 64:
            _signers.clear()
        signer = _signers[key] = Signer(key)
    return signer


def _verifier(key: bytes) -> Signer:
    # The receiver hashes 20,000 datagrams/s: OpenSSL's SHA-256 is twice the built-in's speed.
    signer = _verifiers.get(key)
    if signer is None:
        try:
            from _hashlib import openssl_sha256 as constructor
        except ImportError:  # pragma: no cover - Python without OpenSSL
            constructor = sha256
        if len(_verifiers) > 64:
            _verifiers.clear()
        signer = _verifiers[key] = Signer(key, constructor)
    return signer


def _num(x: float, places: int) -> str:
    """A finite number as JSON, rounded to PLACES decimals."""
    if type(x) is int:
        return str(x)
    x = round(float(x), places)
    if x - x != 0.0:
        raise ValueError("telemetry values must be finite numbers")
    return repr(x)


def _count(x: int) -> str:
    if type(x) is not int:
        x = int(x)
    return str(x)


def _counts(values: dict[str, int], limit: int) -> str:
    return ",".join(f"{_quote(k)}:{_count(v)}" for k, v in list(values.items())[:limit])


def _body(
    sample: Sample,
    head: str,
    core_places: int,
    net: list[tuple[str, tuple[int, int]]],
    meminfo_limit: int,
) -> bytes:
    load = sample.loadavg
    cores = ",".join([_num(c, core_places) for c in sample.cores[:MAX_CORES]])
    ifaces = ",".join(f"{_quote(k)}:[{_count(v[0])},{_count(v[1])}]" for k, v in net)
    text = (
        f'{{"cpufreq":{_count(sample.cpufreq)},"cputemp":{_num(sample.cputemp, 1)},'
        f'"cpuusage":{_num(sample.cpuusage, 4)},'
        f'"loadavg":[{_num(load[0], 2)},{_num(load[1], 2)},{_num(load[2], 2)}],'
        f'"meminfo":{{{_counts(sample.meminfo, meminfo_limit)}}},{head}'
        f'"cores":[{cores}],"disk":{{{_counts(sample.disk, 8)}}},"net":{{{ifaces}}},'
        f'"uptime":{_num(sample.uptime, 1)}}}'
    )
    return text.encode("ascii")


def sign(body: bytes, key: bytes, key_id: str) -> bytes:
    """Splice an HMAC-SHA256 signature of BODY (a JSON object's bytes) in as its last key."""
    digest = _signer(key).hexdigest(body)
    return body[:-1] + f',"sig":"{SIG_SCHEME}:{key_id}:{digest}"}}'.encode()


def _busiest(net: dict[str, tuple[int, int]], limit: int) -> list[tuple[str, tuple[int, int]]]:
    items = list(net.items())
    if len(items) > limit:  # many (virtual) interfaces: keep the ones that carry traffic
        items = sorted(items, key=lambda kv: -(kv[1][0] + kv[1][1]))[:limit]
    return items


def _check_names(node: str, key: bytes | None, key_id: str) -> None:
    if not 0 < len(node) <= MAX_NAME or not node.isprintable():
        raise ValueError(f"node name must be 1 to {MAX_NAME} printable characters")
    if key is not None and not (0 < len(key_id) <= MAX_KEY_ID and _KEY_ID_CHARS.issuperset(key_id)):
        raise ValueError(f"key id must be 1 to {MAX_KEY_ID} letters, digits, '_', '.', '-'")


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
    """One datagram for SAMPLE, signed with KEY when given; always at most MAX_DATAGRAM bytes.

    Raises ValueError for a node name or key id a receiver would refuse, or non-finite values.
    """
    _check_names(node, key, key_id)
    head = (
        f'"v":{VERSION},"node":{_quote(node)},"boot":{_count(boot)},"seq":{_count(seq)},'
        f'"ts":{_num(ts, 3)},"interval":{_num(interval, 3)},'
    )
    room = MAX_DATAGRAM - (len(SIG_SCHEME) + len(key_id) + 77 if key is not None else 0)
    # Shrink step by step until it fits: coarser per-core figures, fewer interfaces, then
    # no per-core detail; the original five keys always stay.
    net = _busiest(sample.net, MAX_IFACES)
    for core_places, iface_limit, meminfo_limit, keep_cores in (
        (3, MAX_IFACES, MAX_MEMINFO, True),
        (2, MAX_IFACES, MAX_MEMINFO, True),
        (2, 2, MAX_MEMINFO, True),
        (2, 2, MAX_MEMINFO, False),
        (2, 0, 8, False),
    ):
        smaller = sample if keep_cores else sample._replace(cores=())
        body = _body(smaller, head, core_places, net[:iface_limit], meminfo_limit)
        if len(body) <= room:
            return sign(body, key, key_id) if key is not None else body
    raise ValueError(f"telemetry sample does not fit in {MAX_DATAGRAM} bytes")


_CORE_PLACES = (3,) * MAX_CORES
if TYPE_CHECKING:
    _Shape = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], int]


def _template(keys: tuple[str, ...], value: str) -> str:
    return ",".join([_quote(k).replace("%", "%%") + value for k in keys])


class Encoder:
    """`encode` for one sender: the same bytes, with what never changes (node, boot,
    interval, key) checked and formatted once, and one `%` format per datagram.

    The agent encodes every interval for months: this is its share of the work. A sample
    that needs shrinking, or has values `encode` refuses, goes through `encode`.
    """

    __slots__ = ("_fixed", "_formats", "_head", "_inner", "_outer", "_room", "_sig")

    def __init__(
        self, *, node: str, boot: int, interval: float, key: bytes | None, key_id: str
    ) -> None:
        _check_names(node, key, key_id)
        self._fixed = (node, boot, interval, key, key_id)
        self._head = (
            f'"v":{VERSION},"node":{_quote(node)},"boot":{_count(boot)},'.replace("%", "%%")
            + f'"seq":%d,"ts":%r,"interval":{_num(interval, 3)},'
        )
        self._room = MAX_DATAGRAM - (len(SIG_SCHEME) + len(key_id) + 77 if key is not None else 0)
        self._sig = f',"sig":"{SIG_SCHEME}:{key_id}:%s"}}'  # key ids have no "%"
        signer = _signer(key) if key is not None else None
        self._inner: Any = signer._inner if signer is not None else None
        self._outer: Any = signer._outer if signer is not None else None
        # One format per shape of sample (its meminfo, disk and net keys, its core count).
        self._formats: dict[_Shape, bytes] = {}

    def _format(self, shape: _Shape) -> bytes:
        meminfo, disk, net, cores = shape
        if len(self._formats) > 64:
            self._formats.clear()
        template = self._formats[shape] = (
            '{"cpufreq":%d,"cputemp":%r,"cpuusage":%r,"loadavg":[%r,%r,%r],'
            f'"meminfo":{{{_template(meminfo, ":%d")}}},{self._head}'
            f'"cores":[{",".join(["%r"] * cores)}],"disk":{{{_template(disk, ":%d")}}},'
            f'"net":{{{_template(net, ":[%d,%d]")}}},"uptime":%r}}'
        ).encode("ascii")
        return template

    def encode(self, sample: Sample, seq: int, ts: float) -> bytes:
        """One datagram for SAMPLE: what `encode(sample, seq=SEQ, ts=TS, ...)` returns."""
        cpufreq, cputemp, cpuusage, load, meminfo, cores, disk, net, uptime = sample
        shape: _Shape = (tuple(meminfo), tuple(disk), tuple(net), len(cores))
        template = self._formats.get(shape)
        if template is None:
            if (
                len(meminfo) > MAX_MEMINFO
                or len(disk) > 8
                or len(net) > MAX_IFACES
                or len(cores) > MAX_CORES
            ):
                return self._encode(sample, seq, ts)
            template = self._format(shape)
        finite = cputemp + cpuusage + load[0] + load[1] + load[2] + ts + uptime + sum(cores)
        try:
            body = template % (
                cpufreq,
                round(cputemp, 1),
                round(cpuusage, 4),
                round(load[0], 2),
                round(load[1], 2),
                round(load[2], 2),
                *meminfo.values(),
                seq,
                round(ts, 3),
                *map(round, cores, _CORE_PLACES),
                *disk.values(),
                *sum(net.values(), ()),
                round(uptime, 1),
            )
        except TypeError:  # a value of another type than the sampler's
            return self._encode(sample, seq, ts)
        if len(body) > self._room or finite - finite != 0.0:
            return self._encode(sample, seq, ts)
        if self._inner is None:
            return body
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: str = outer.hexdigest()
        return body[:-1] + (self._sig % digest).encode()

    def _encode(self, sample: Sample, seq: int, ts: float) -> bytes:
        node, boot, interval, key, key_id = self._fixed
        return encode(
            sample, node=node, boot=boot, seq=seq, ts=ts, interval=interval, key=key, key_id=key_id
        )


# ---- decoding ----

_scan: Callable[[str, int], tuple[object, int]] | None = None
_NUMBER = (int, float)


def _no_constant(name: str) -> object:
    raise Rejected("bad_shape", f"non-finite number {name}")


def _scanner() -> Callable[[str, int], tuple[object, int]]:
    global _scan
    from json.decoder import JSONDecoder

    scan: Callable[[str, int], tuple[object, int]]
    scan = JSONDecoder(parse_constant=_no_constant).scan_once  # type: ignore[attr-defined]
    _scan = scan
    return scan


def _bad(detail: str) -> Rejected:
    return Rejected("bad_shape", detail)


def _range(value: object, low: float, high: float, what: str) -> float:
    # JSON NaN/Infinity are refused by the scanner; a range check also refuses 1e999.
    if (type(value) is float or type(value) is int) and low <= value <= high:
        return value
    raise _bad(f"{what} must be a number within {low:g}..{high:g}")


def _ints(value: object, limit: int, what: str) -> dict[str, int]:
    if type(value) is not dict or len(value) > limit:
        raise _bad(f"{what} must be an object of at most {limit} counts")
    if value:
        values = value.values()
        if set(map(type, values)) != {int} or min(values) < 0:
            raise _bad(f"{what} values must be non-negative integers")
    return value


def _sample(obj: dict[str, object]) -> Sample:
    load = obj.get("loadavg")
    if type(load) is not list or len(load) != 3:
        raise _bad("loadavg must be a list of 3 numbers")
    cores = obj.get("cores")
    if cores is None:  # the original C daemon's later versions call it "coreusage"
        cores = obj.get("coreusage", [])
    if type(cores) is not list or len(cores) > MAX_CORES:
        raise _bad(f"cores must be a list of at most {MAX_CORES} fractions")
    if cores and (not set(map(type, cores)).issubset(_NUMBER) or min(cores) < 0 or max(cores) > 1):
        raise _bad("cores must be fractions within 0..1")
    net_raw = obj.get("net", {})
    if type(net_raw) is not dict or len(net_raw) > 32:
        raise _bad("net must be an object of at most 32 interfaces")
    net: dict[str, tuple[int, int]] = {}
    for name, pair in net_raw.items():
        if (
            type(pair) is not list
            or len(pair) != 2
            or type(pair[0]) is not int
            or type(pair[1]) is not int
            or pair[0] < 0
            or pair[1] < 0
        ):
            raise _bad("net values must be [rx bytes, tx bytes]")
        net[name] = (pair[0], pair[1])
    return Sample(
        int(_range(obj.get("cpufreq", 0), 0, 1e6, "cpufreq")),
        float(_range(obj.get("cputemp", 0), -273.15, 1000, "cputemp")),
        float(_range(obj.get("cpuusage"), 0, 1, "cpuusage")),
        (
            float(_range(load[0], 0, 1e6, "loadavg")),
            float(_range(load[1], 0, 1e6, "loadavg")),
            float(_range(load[2], 0, 1e6, "loadavg")),
        ),
        _ints(obj.get("meminfo"), 64, "meminfo"),
        tuple(cores),
        _ints(obj.get("disk", {}), 8, "disk"),
        net,
        float(_range(obj.get("uptime", 0), 0, 1e10, "uptime")),
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
    ALLOW_UNSIGNED; they are named by SOURCE and stamped with NOW. Nothing but Rejected is
    ever raised, whatever the bytes.
    """
    if len(data) > MAX_DATAGRAM:
        raise Rejected("oversize", f"{len(data)} bytes")
    data = bytes(data).rstrip(b"\x00")
    signed_body: bytes | None = None
    key_id: str | None = None
    cut = data.rfind(SIG_MARK)
    if cut != -1:
        tail = data[cut + len(SIG_MARK) :]
        if not tail.endswith(b'"}'):
            raise Rejected("bad_signature", "signature is not the last key")
        parts = tail[:-2].split(b":")
        if len(parts) != 3 or parts[0] != b"hmac-sha256":
            raise Rejected("bad_signature", "malformed signature")
        try:
            key_id = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise Rejected("bad_signature", "malformed key id") from None
        key = keys.get(key_id)
        if key is None:
            raise Rejected("unknown_key", repr(key_id[:MAX_KEY_ID]))
        signed_body = data[:cut] + b"}"
        expected = _verifier(key).hexdigest(signed_body).encode()
        if not compare_digest(expected, parts[2]):
            raise Rejected("bad_signature", "signature does not verify")
    elif not allow_unsigned:
        raise Rejected("unsigned", "unsigned datagram and telemetry.allow_unsigned is false")
    try:
        text = (data if signed_body is None else signed_body).decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("not_utf8") from None
    scan = _scan or _scanner()
    try:
        obj, end = scan(text, 0)
    except (ValueError, StopIteration, RecursionError):
        raise Rejected("not_json") from None
    if end != len(text) and text[end:].strip():
        raise Rejected("not_json", "extra data after the object")
    if type(obj) is not dict:
        raise _bad("not a JSON object")
    sample = _sample(obj)
    if signed_body is None:
        return Packet(source, 0, 0, now, 0.0, sample, False, None)
    node = obj.get("node")
    if type(node) is not str or not 0 < len(node) <= MAX_NAME or not node.isprintable():
        raise _bad("node must be a short printable name")
    boot = obj.get("boot")
    seq = obj.get("seq")
    if type(boot) is not int or type(seq) is not int or boot < 0 or seq < 0:
        raise _bad("boot and seq must be non-negative integers")
    if obj.get("v") != VERSION:
        raise _bad("unknown format version")
    return Packet(
        node,
        boot,
        seq,
        float(_range(obj.get("ts"), 0, 1e11, "ts")),
        float(_range(obj.get("interval"), 0.001, 3600, "interval")),
        sample,
        True,
        key_id,
    )


def check_clock(packet: Packet, now: float, window: float) -> None:
    """Reject PACKET if its sender's clock is more than WINDOW seconds from NOW."""
    if abs(packet.ts - now) > window:
        raise Rejected("clock_skew", f"{packet.ts - now:+.1f} s")
