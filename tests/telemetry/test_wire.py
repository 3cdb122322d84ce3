"""Wire format v1: round-trips, signatures, and everything a bad sender can send."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bramble.telemetry.decode import check_clock, decode
from bramble.telemetry.encode import Encoder, encode, sign
from bramble.telemetry.wire import MAX_DATAGRAM, ORIGINAL_KEYS, Packet, Rejected, Sample, Signer

KEY = bytes(range(32))
KEYS = {"k1": KEY}
NOW = 1_800_000_000.0
SAMPLE = Sample(
    cpufreq=1500,
    cputemp=48.3,
    cpuusage=0.25,
    loadavg=(0.5, 0.25, 0.13),
    meminfo={"MemTotal": 1000, "MemFree": 200, "MemAvailable": 500},
    cores=(0.1, 0.4, 0.2, 0.3),
    disk={"total": 10_000, "used": 4_000, "free": 6_000},
    net={"eth0": (123, 456)},
    uptime=99.5,
)
# What the original C daemon sends: the five keys, then NUL padding to its buffer size.
LEGACY = (
    b'{"cpufreq": 700, "cputemp": 44.4, "cpuusage": 0.12, "loadavg": [0.15, 0.1, 0.05], '
    b'"meminfo": {"MemTotal": 448776, "MemFree": 300000, "Buffers": 1000, "Cached": 50000}}'
    + b"\x00"
    * 40
)


def signed(sample: Sample = SAMPLE, **kw: object) -> bytes:
    args: dict[str, object] = {
        "node": "node-1", "boot": 1_700_000_000, "seq": 7, "ts": NOW, "interval": 1.0,
        "key": KEY, "key_id": "k1",
    }  # fmt: skip
    args.update(kw)
    return encode(sample, **args)  # type: ignore[arg-type]


def test_round_trip() -> None:
    packet = decode(signed(), KEYS, allow_unsigned=False, source="10.42.0.11")
    assert packet == Packet("node-1", 1_700_000_000, 7, NOW, 1.0, SAMPLE, True, "k1")


def test_original_keys_stay_at_top_level_with_their_meaning() -> None:
    obj = json.loads(signed())
    assert list(obj)[:5] == list(ORIGINAL_KEYS)
    assert obj["cpufreq"] == 1500 and obj["cputemp"] == 48.3 and obj["cpuusage"] == 0.25
    assert obj["loadavg"] == [0.5, 0.25, 0.13]
    assert obj["meminfo"]["MemTotal"] == 1000
    assert obj["sig"].startswith("hmac-sha256:k1:")


def test_signature_is_hmac_of_the_bytes_without_sig() -> None:
    data = signed()
    cut = data.rfind(b',"sig":"')
    body = data[:cut] + b"}"
    digest = hmac.new(KEY, body, hashlib.sha256).hexdigest()
    assert data.endswith(f'"hmac-sha256:k1:{digest}"}}'.encode())


@pytest.mark.parametrize("key", [b"k", bytes(32), bytes(64), bytes(100)])
def test_signer_matches_hmac_module(key: bytes) -> None:
    assert Signer(key).hexdigest(b"abc") == hmac.new(key, b"abc", hashlib.sha256).hexdigest()


def reason(data: bytes, *, allow_unsigned: bool = False, keys: dict[str, bytes] = KEYS) -> str:
    with pytest.raises(Rejected) as caught:
        decode(data, keys, allow_unsigned=allow_unsigned, source="10.0.0.9", now=NOW)
    return caught.value.reason


def test_tampered_value_fails_the_signature() -> None:
    data = signed().replace(b'"cpuusage":0.25', b'"cpuusage":0.95')
    assert reason(data) == "bad_signature"


def test_every_single_byte_flip_is_rejected() -> None:
    data = signed()
    for i in range(len(data)):
        flipped = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        with pytest.raises(Rejected):
            decode(flipped, KEYS, allow_unsigned=False, source="x")


def test_truncation_is_rejected_at_every_length() -> None:
    data = signed()
    for n in range(len(data)):
        with pytest.raises(Rejected):
            decode(data[:n], KEYS, allow_unsigned=False, source="x")


def test_wrong_key_and_unknown_key_id() -> None:
    assert reason(signed(key=b"another key of 32 bytes........")) == "bad_signature"
    assert reason(signed(key_id="k9")) == "unknown_key"


def test_legacy_packets_only_when_allowed() -> None:
    assert reason(LEGACY) == "unsigned"
    packet = decode(LEGACY, {}, allow_unsigned=True, source="10.42.0.23", now=NOW)
    assert packet.node == "10.42.0.23" and not packet.signed and packet.ts == NOW
    assert packet.sample.cpufreq == 700 and packet.sample.meminfo["MemTotal"] == 448776


def test_oversize_non_json_non_utf8_and_bad_shapes() -> None:
    assert reason(b"{" + b" " * MAX_DATAGRAM + b"}", allow_unsigned=True) == "oversize"
    assert reason(b"not json at all", allow_unsigned=True) == "not_json"
    assert reason(b'{"cpufreq": "\xff\xfe"}', allow_unsigned=True) == "not_utf8"
    assert reason(b"[1, 2, 3]", allow_unsigned=True) == "bad_shape"
    assert reason(LEGACY.replace(b"0.12", b"7.5"), allow_unsigned=True) == "bad_value"
    assert reason(LEGACY.replace(b"[0.15, 0.1, 0.05]", b"[1]"), allow_unsigned=True) == "bad_shape"
    assert reason(LEGACY.replace(b"44.4", b"NaN"), allow_unsigned=True) == "bad_value"
    body = json.loads(signed())
    del body["sig"]
    body["node"] = ""
    assert reason(sign(json.dumps(body).encode(), KEY, "k1")) == "bad_text"


def test_clock_window() -> None:
    packet = decode(signed(), KEYS, allow_unsigned=False, source="x")
    check_clock(packet, NOW + 29, 30)
    with pytest.raises(Rejected) as caught:
        check_clock(packet, NOW + 31, 30)
    assert caught.value.reason == "clock_skew"


def test_many_cores_still_fit_one_datagram() -> None:
    big = SAMPLE._replace(
        cores=tuple(0.123456 for _ in range(256)),
        net={f"veth{i:04d}": (10**12, 10**12) for i in range(40)},
    )
    data = signed(big)
    assert len(data) <= MAX_DATAGRAM
    assert decode(data, KEYS, allow_unsigned=False, source="x").sample.cpuusage == 0.25


fractions = st.floats(min_value=0, max_value=1, allow_nan=False)
counts = st.integers(min_value=0, max_value=2**53)
samples = st.builds(
    Sample,
    cpufreq=st.integers(min_value=0, max_value=10_000),
    cputemp=st.floats(min_value=-40, max_value=150, allow_nan=False).map(lambda x: round(x, 1)),
    cpuusage=fractions.map(lambda x: round(x, 4)),
    loadavg=st.tuples(*[st.floats(0, 1000, allow_nan=False).map(lambda x: round(x, 2))] * 3),
    meminfo=st.dictionaries(st.sampled_from(["MemTotal", "MemFree", "Cached"]), counts),
    cores=st.lists(fractions.map(lambda x: round(x, 3)), max_size=16).map(tuple),
    disk=st.dictionaries(st.sampled_from(["total", "used", "free"]), counts),
    net=st.dictionaries(
        st.text("abcdefgh0123456789", min_size=1, max_size=8), st.tuples(counts, counts), max_size=4
    ),
    uptime=st.floats(0, 10**8, allow_nan=False).map(lambda x: round(x, 1)),
)


@settings(max_examples=200, deadline=None)
@given(
    sample=samples,
    node=st.text(
        st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40
    ).filter(str.isprintable),
    seq=st.integers(min_value=0, max_value=2**40),
)
def test_round_trip_property(sample: Sample, node: str, seq: int) -> None:
    packet = decode(signed(sample, node=node, seq=seq), KEYS, allow_unsigned=False, source="x")
    assert packet.sample == sample and packet.node == node and packet.seq == seq


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=1600), allow=st.booleans())
def test_garbage_only_ever_raises_rejected(data: bytes, allow: bool) -> None:
    with contextlib.suppress(Rejected):
        decode(data, KEYS, allow_unsigned=allow, source="x", now=NOW)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_any_json_only_ever_raises_rejected(value: object) -> None:
    data = json.dumps(value).encode()
    for body in (data, data + b"\x00\x00"):
        with contextlib.suppress(Rejected):
            decode(body, KEYS, allow_unsigned=True, source="x", now=NOW)


@settings(max_examples=300, deadline=None)
@given(
    sample=samples,
    seq=st.integers(min_value=0, max_value=2**40),
    ts=st.floats(min_value=0, max_value=1e11, allow_nan=False),
    signed=st.booleans(),
)
def test_encoder_writes_the_same_bytes_as_encode(
    sample: Sample, seq: int, ts: float, signed: bool
) -> None:
    args = {"node": "node-1", "boot": 42, "interval": 0.5, "key": KEY if signed else None,
            "key_id": "k1"}  # fmt: skip
    encoder = Encoder(**args)  # type: ignore[arg-type]
    assert encoder.encode(sample, seq, ts) == encode(sample, seq=seq, ts=ts, **args)  # type: ignore[arg-type]
    # A second datagram of the same shape takes the kept format.
    assert encoder.encode(sample, seq + 1, ts) == encode(sample, seq=seq + 1, ts=ts, **args)  # type: ignore[arg-type]


def test_encoder_hands_what_needs_shrinking_or_refusing_to_encode() -> None:
    encoder = Encoder(node="n%d", boot=1, interval=1.0, key=KEY, key_id="k1")
    big = SAMPLE._replace(cores=tuple(0.123456 for _ in range(256)))
    assert encoder.encode(big, 1, NOW) == encode(big, node="n%d", boot=1, seq=1, ts=NOW,
                                                 interval=1.0, key=KEY, key_id="k1")  # fmt: skip
    wide = SAMPLE._replace(net={f"veth{i:04d}": (10**12, 10**12) for i in range(40)})
    assert len(encoder.encode(wide, 1, NOW)) <= MAX_DATAGRAM
    with pytest.raises(ValueError, match="finite"):
        encoder.encode(SAMPLE._replace(uptime=float("inf")), 1, NOW)
    with pytest.raises(ValueError, match="node name"):
        Encoder(node="", boot=1, interval=1.0, key=KEY, key_id="k1")
