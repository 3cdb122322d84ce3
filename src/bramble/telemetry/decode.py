"""Reading datagrams: decode and verify what a sender sent. Pure: bytes and keys in, a
`Packet` or `Rejected` out, whatever the bytes.

The JSON scanner is imported on first use.
"""

from __future__ import annotations

from _operator import _compare_digest as compare_digest  # hmac's, without OpenSSL

from bramble.telemetry.wire import (
    LEGACY_INTERVAL,
    MAX_CORES,
    MAX_DATAGRAM,
    MAX_FIELD,
    MAX_FS,
    MAX_IFNAME,
    MAX_KEY_ID,
    MAX_MODEL,
    MAX_MOUNT,
    MAX_NAME,
    MAX_PROC_NAME,
    MAX_PROCS,
    RANGES,
    SIG_MARK,
    VERSION,
    Packet,
    Proc,
    ProcsPacket,
    Rejected,
    Sample,
    Signer,
)

try:
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import sha256

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

_verifiers: dict[bytes, Signer] = {}
MAX_VERIFIERS = 4096
"""Keys whose HMAC states are kept: every enrolled node has its own key, and a cluster of
more nodes than this would build them again on every datagram."""


def _verifier(key: bytes) -> Signer:
    # The receiver hashes 20,000 datagrams/s: OpenSSL's SHA-256 is twice the built-in's speed.
    signer = _verifiers.get(key)
    if signer is None:
        try:
            from _hashlib import openssl_sha256 as constructor
        except ImportError:  # pragma: no cover - Python without OpenSSL
            constructor = sha256
        if len(_verifiers) >= MAX_VERIFIERS:
            _verifiers.clear()
        signer = _verifiers[key] = Signer(key, constructor)
    return signer


_scan: Callable[[str, int], tuple[object, int]] | None = None
_NUMBER = (int, float)


def _no_constant(name: str) -> object:
    raise Rejected("bad_value", f"non-finite number {name}")


def _scanner() -> Callable[[str, int], tuple[object, int]]:
    global _scan
    from json.decoder import JSONDecoder

    scan: Callable[[str, int], tuple[object, int]]
    scan = JSONDecoder(parse_constant=_no_constant).scan_once  # type: ignore[attr-defined]
    _scan = scan
    return scan


def _bad(detail: str) -> Rejected:
    return Rejected("bad_shape", detail)


def _number(value: object, what: str, name: str | None = None) -> float:
    """VALUE if it is a number within RANGES[NAME or WHAT]: bad_shape if not a number,
    bad_value if outside (JSON's 1e999 is a float infinity, 10**400 an int)."""
    if type(value) is not float and type(value) is not int:
        raise _bad(f"{what} must be a number")
    low, high = RANGES[name or what]
    if low <= value <= high:
        return value
    raise Rejected("bad_value", f"{what} must be within {low:g}..{high:g}")


# Names already found good, by kind: a node sends the same few every time, so each is
# checked once.
_good_names: dict[str, set[str]] = {
    "interface": set(),
    "meminfo": set(),
    "disk": set(),
    "mount": set(),
}


def _names(names: Iterable[str], limit: int, what: str) -> None:
    """bad_text unless every name is 1..LIMIT printable characters without spaces (and, for
    interfaces, as the kernel allows them: no '/', not '.' or '..')."""
    good = _good_names[what]
    fresh = [n for n in names if n not in good]
    for name in fresh:
        if (
            not 0 < len(name) <= limit
            or not name.isprintable()
            or " " in name
            or (what == "interface" and ("/" in name or name in (".", "..")))
        ):
            raise Rejected("bad_text", f"{what} names must be 1 to {limit} printable characters")
    if fresh and len(good) < 4096:
        good.update(fresh)


def _counts(value: object, limit: int, what: str, *, lenient: bool = False) -> dict[str, int]:
    """An object of at most LIMIT named counts within RANGES[WHAT].

    LENIENT (the original daemon's meminfo, read with scanf's %d): a count that is not an
    integer in range is left out instead of refusing the datagram.
    """
    if type(value) is not dict or len(value) > limit:
        raise _bad(f"{what} must be an object of at most {limit} counts")
    if not value:
        return value
    _names(value, MAX_FIELD, what)
    low, high = RANGES[what]
    values = value.values()
    if set(map(type, values)) == {int} and low <= min(values) and max(values) <= high:
        return value
    if lenient:
        return {k: v for k, v in value.items() if type(v) is int and low <= v <= high}
    if set(map(type, values)) != {int}:
        raise _bad(f"{what} values must be integers")
    raise Rejected("bad_value", f"{what} values must be within {low:g}..{high:g}")


def _integers(value: object, count: int, what: str) -> tuple[int, ...]:
    """A list of COUNT integers within RANGES[WHAT]."""
    if type(value) is not list or len(value) != count or {type(v) for v in value} != {int}:
        raise _bad(f"{what} must be a list of {count} integers")
    low, high = RANGES[what]
    if not (low <= min(value) and max(value) <= high):
        raise Rejected("bad_value", f"{what} values must be within {low:g}..{high:g}")
    return tuple(value)


def _board(
    obj: dict[str, object],
) -> tuple[
    str | None,
    int | None,
    tuple[int, int] | None,
    tuple[int, int] | None,
    dict[str, tuple[int, int, int]],
]:
    """What only some boards send (model, throttled, swap, diskio, fs): each None (or empty)
    when absent, never 0."""
    model = obj.get("model")
    if model is not None:
        if type(model) is not str:
            raise _bad("model must be a string")
        if not 0 < len(model) <= MAX_MODEL or not model.isprintable():
            raise Rejected("bad_text", f"model must be 1 to {MAX_MODEL} printable characters")
    throttled = obj.get("throttled")
    if throttled is not None:
        if type(throttled) is not int:
            raise _bad("throttled must be an integer")
        _number(throttled, "throttled")
    swap = obj.get("swap")
    diskio = obj.get("diskio")
    fs_raw = obj.get("fs", {})
    if type(fs_raw) is not dict or len(fs_raw) > MAX_FS:
        raise _bad(f"fs must be an object of at most {MAX_FS} filesystems")
    fs: dict[str, tuple[int, int, int]] = {}
    if fs_raw:
        _names(fs_raw, MAX_MOUNT, "mount")
        for point, row in fs_raw.items():
            total, used, free = _integers(row, 3, "fs")
            fs[point] = (total, used, free)
    pairs: list[tuple[int, int] | None] = []
    for what, value in (("swap", swap), ("diskio", diskio)):
        pair = None if value is None else _integers(value, 2, what)
        pairs.append(None if pair is None else (pair[0], pair[1]))
    return model, throttled, pairs[0], pairs[1], fs


def _sample(obj: dict[str, object], signed: bool) -> Sample:
    load = obj.get("loadavg")
    if type(load) is not list or len(load) != 3:
        raise _bad("loadavg must be a list of 3 numbers")
    cores = obj.get("cores")
    if cores is None:  # the original C daemon's later versions call it "coreusage"
        cores = obj.get("coreusage", [])
    if type(cores) is not list or len(cores) > MAX_CORES:
        raise _bad(f"cores must be a list of at most {MAX_CORES} fractions")
    if cores:
        if not set(map(type, cores)).issubset(_NUMBER):
            raise _bad("cores must be numbers")
        if min(cores) < 0 or max(cores) > 1:
            raise Rejected("bad_value", "cores must be fractions within 0..1")
    net_raw = obj.get("net", {})
    if type(net_raw) is not dict or len(net_raw) > 32:
        raise _bad("net must be an object of at most 32 interfaces")
    net: dict[str, tuple[int, int]] = {}
    if net_raw:
        _names(net_raw, MAX_IFNAME, "interface")
        high = RANGES["net"][1]
        for name, pair in net_raw.items():
            if type(pair) is not list or len(pair) != 2:
                raise _bad("net values must be [rx bytes, tx bytes]")
            rx, tx = pair
            if type(rx) is not int or type(tx) is not int:
                raise _bad("net values must be [rx bytes, tx bytes]")
            if not (0 <= rx <= high and 0 <= tx <= high):
                raise Rejected("bad_value", f"net counters must be within 0..{high}")
            net[name] = (rx, tx)
    return Sample(
        int(_number(obj.get("cpufreq", 0), "cpufreq")),
        float(_number(obj.get("cputemp", 0), "cputemp")),
        float(_number(obj.get("cpuusage"), "cpuusage")),
        (
            float(_number(load[0], "loadavg")),
            float(_number(load[1], "loadavg")),
            float(_number(load[2], "loadavg")),
        ),
        _counts(obj.get("meminfo"), 64, "meminfo", lenient=not signed),
        tuple(cores),
        _counts(obj.get("disk", {}), 8, "disk"),
        net,
        float(_number(obj.get("uptime", 0), "uptime")),
        *_board(obj),
    )


def _control(text: str) -> bool:
    """Whether TEXT has a control character (C0, DEL, C1) or a lone surrogate."""
    return any(c < " " or "\x7f" <= c < "\xa0" or "\ud800" <= c <= "\udfff" for c in text)


def _procs(value: object) -> tuple[Proc, ...]:
    """A process datagram's rows: at most MAX_PROCS of [name, pid, cpu %, rss bytes], names of
    at most MAX_PROC_NAME characters without control characters, numbers in RANGES, each
    pid once."""
    if type(value) is not list or len(value) > MAX_PROCS:
        raise _bad(f"procs must be a list of at most {MAX_PROCS} processes")
    out = []
    for row in value:
        if type(row) is not list or len(row) != 4:
            raise _bad("a process must be [name, pid, cpu, rss]")
        name, pid, cpu, rss = row
        if type(name) is not str or type(pid) is not int or type(rss) is not int:
            raise _bad("a process must be [name, pid, cpu, rss]")
        if len(name) > MAX_PROC_NAME or _control(name):
            raise Rejected(
                "bad_text", f"process names must be at most {MAX_PROC_NAME} printable characters"
            )
        out.append(Proc(name, pid, float(_number(cpu, "cpu")), rss))
        _number(pid, "pid")
        _number(rss, "rss")
    if len({p.pid for p in out}) != len(out):
        raise Rejected("bad_value", "a process is listed twice")
    return tuple(out)


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
    ever raised, whatever the bytes. A process datagram is `bad_shape` here: see
    `decode_datagram`.
    """
    packet = decode_datagram(data, keys, allow_unsigned=allow_unsigned, source=source, now=now)
    if type(packet) is not Packet:
        raise _bad("a process datagram, not a sample")
    return packet


def decode_datagram(
    data: bytes,
    keys: Mapping[str, bytes],
    *,
    allow_unsigned: bool,
    source: str,
    now: float = 0.0,
) -> Packet | ProcsPacket:
    """`decode`, and process datagrams (a `procs` key, signed only) as a ProcsPacket."""
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
    if "procs" in obj:
        if signed_body is None:
            raise Rejected("unsigned", "process datagrams must be signed")
        node, boot, seq = _head(obj)
        ts = float(_number(obj.get("ts"), "ts"))
        return ProcsPacket(node, boot, seq, ts, _procs(obj["procs"]), key_id)
    sample = _sample(obj, signed_body is not None)
    if signed_body is None:
        return Packet(source, 0, 0, now, LEGACY_INTERVAL, sample, False, None)
    node, boot, seq = _head(obj)
    return Packet(
        node,
        boot,
        seq,
        float(_number(obj.get("ts"), "ts")),
        float(_number(obj.get("interval"), "interval")),
        sample,
        True,
        key_id,
    )


def _head(obj: dict[str, object]) -> tuple[str, int, int]:
    """A signed datagram's node, boot and seq (its version checked)."""
    node = obj.get("node")
    if type(node) is not str:
        raise _bad("node must be a name")
    if not 0 < len(node) <= MAX_NAME or not node.isprintable():
        raise Rejected("bad_text", f"node must be 1 to {MAX_NAME} printable characters")
    boot = obj.get("boot")
    seq = obj.get("seq")
    if type(boot) is not int or type(seq) is not int:
        raise _bad("boot and seq must be integers")
    _number(boot, "boot")
    _number(seq, "seq")
    if obj.get("v") != VERSION:
        raise _bad("unknown format version")
    return node, boot, seq


def check_clock(packet: Packet | ProcsPacket, now: float, window: float) -> None:
    """Reject PACKET if its sender's clock is more than WINDOW seconds from NOW."""
    if abs(packet.ts - now) > window:
        raise Rejected("clock_skew", f"{packet.ts - now:+.1f} s")
