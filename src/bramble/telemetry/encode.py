"""Writing datagrams: encode a sample, sign it, and the agent's fast `Encoder`. Pure, stdlib only.

This module is imported by the agent that runs on every board, so it stays small: no
`typing`, `json` or `hashlib` at import time. Encoding writes the JSON itself.
"""

from __future__ import annotations

try:
    from _json import encode_basestring_ascii as _quote
except ImportError:  # pragma: no cover - other interpreters
    from json.encoder import py_encode_basestring_ascii as _quote

from bramble.telemetry.wire import (
    KEY_ID_CHARS,
    MAX_CORES,
    MAX_DATAGRAM,
    MAX_FS,
    MAX_IFACES,
    MAX_KEY_ID,
    MAX_MEMINFO,
    MAX_NAME,
    SIG_SCHEME,
    VERSION,
    Proc,
    Sample,
    Signer,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (2 MiB)
if TYPE_CHECKING:
    from typing import Any

_signers: dict[bytes, Signer] = {}


def _signer(key: bytes) -> Signer:
    signer = _signers.get(key)
    if signer is None:
        if len(_signers) > 64:
            _signers.clear()
        signer = _signers[key] = Signer(key)
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


def _extra(sample: Sample, keep_fs: bool) -> str:
    """The keys a board has or lacks, after `uptime`, each only where the board has it."""
    model, throttled, swap, diskio, fs = sample[9:]
    text = "" if model is None else f',"model":{_quote(model)}'
    if throttled is not None:
        text += f',"throttled":{_count(throttled)}'
    if swap is not None:
        text += f',"swap":[{_count(swap[0])},{_count(swap[1])}]'
    if diskio is not None:
        text += f',"diskio":[{_count(diskio[0])},{_count(diskio[1])}]'
    if fs and keep_fs:
        rows = ",".join(
            f"{_quote(k)}:[{_count(v[0])},{_count(v[1])},{_count(v[2])}]"
            for k, v in list(fs.items())[:MAX_FS]
        )
        text += f',"fs":{{{rows}}}'
    return text


def _body(
    sample: Sample,
    head: str,
    core_places: int,
    net: list[tuple[str, tuple[int, int]]],
    meminfo_limit: int,
    keep_fs: bool = True,
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
        f'"uptime":{_num(sample.uptime, 1)}{_extra(sample, keep_fs)}}}'
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
    if key is not None and not (0 < len(key_id) <= MAX_KEY_ID and KEY_ID_CHARS.issuperset(key_id)):
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
    # no per-core detail, then no filesystems; the original five keys always stay.
    net = _busiest(sample.net, MAX_IFACES)
    for core_places, iface_limit, meminfo_limit, keep_cores, keep_fs in (
        (3, MAX_IFACES, MAX_MEMINFO, True, True),
        (2, MAX_IFACES, MAX_MEMINFO, True, True),
        (2, 2, MAX_MEMINFO, True, True),
        (2, 2, MAX_MEMINFO, False, True),
        (2, 0, 8, False, True),
        (2, 0, 8, False, False),
    ):
        smaller = sample if keep_cores else sample._replace(cores=())
        body = _body(smaller, head, core_places, net[:iface_limit], meminfo_limit, keep_fs)
        if len(body) <= room:
            return sign(body, key, key_id) if key is not None else body
    raise ValueError(f"telemetry sample does not fit in {MAX_DATAGRAM} bytes")


def encode_procs(
    procs: list[Proc],
    *,
    node: str,
    boot: int,
    seq: int,
    ts: float,
    key: bytes | None,
    key_id: str,
) -> bytes:
    """One process datagram for PROCS (`ProcReader.read`), signed with KEY when given:
    `{"v":1,"node":…,"boot":…,"seq":…,"ts":…,"procs":[[name, pid, cpu %, rss bytes], …]}`.
    The last rows are left out until it fits in MAX_DATAGRAM bytes."""
    _check_names(node, key, key_id)
    head = (
        f'{{"v":{VERSION},"node":{_quote(node)},"boot":{_count(boot)},"seq":{_count(seq)},'
        f'"ts":{_num(ts, 3)},"procs":['
    )
    rows = [f"[{_quote(p[0])},{_count(p[1])},{_num(p[2], 1)},{_count(p[3])}]" for p in procs]
    room = MAX_DATAGRAM - (len(SIG_SCHEME) + len(key_id) + 77 if key is not None else 0)
    body = f"{head}{','.join(rows)}]}}".encode("ascii")
    while rows and len(body) > room:
        rows.pop()
        body = f"{head}{','.join(rows)}]}}".encode("ascii")
    if len(body) > room:
        raise ValueError(f"a process datagram does not fit in {MAX_DATAGRAM} bytes")
    return sign(body, key, key_id) if key is not None else body


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
            f'"net":{{{_template(net, ":[%d,%d]")}}},"uptime":%r%s}}'
        ).encode("ascii")
        return template

    def encode(self, sample: Sample, seq: int, ts: float) -> bytes:
        """One datagram for SAMPLE: what `encode(sample, seq=SEQ, ts=TS, ...)` returns."""
        cpufreq, cputemp, cpuusage, load, meminfo, cores, disk, net, uptime = sample[:9]
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
                _extra(sample, True).encode("ascii"),
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

    def encode_procs(self, procs: list[Proc], seq: int, ts: float) -> bytes:
        """One process datagram: what `encode_procs(procs, seq=SEQ, ts=TS, ...)` returns."""
        node, boot, _interval, key, key_id = self._fixed
        return encode_procs(procs, node=node, boot=boot, seq=seq, ts=ts, key=key, key_id=key_id)

    def _encode(self, sample: Sample, seq: int, ts: float) -> bytes:
        node, boot, interval, key, key_id = self._fixed
        return encode(
            sample, node=node, boot=boot, seq=seq, ts=ts, interval=interval, key=key, key_id=key_id
        )
