"""Wire edge cases: the original daemon's later format, numbers JSON allows but we refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bramble.telemetry.decode import decode
from bramble.telemetry.encode import encode
from bramble.telemetry.wire import MAX_DATAGRAM, Rejected, Sample

KEY = b"k" * 32
SAMPLE = Sample(600, 45.0, 0.5, (0.1, 0.2, 0.3), {"MemTotal": 1000})

# What the later C daemon (tools/servers/c/multicast_statusd.c) sends: printf's %f floats,
# a hostname, per-core "coreusage" and every kB field of /proc/meminfo.
LATER_C_DAEMON = (
    b'{"hostname":"pi-2","cpufreq":900,"cputemp":51.382000,"cpuusage":0.257500,'
    b'"coreusage":[0.250000,0.260000,0.240000,0.280000],'
    b'"loadavg":[0.310000,0.240000,0.190000],'
    b'"meminfo":{"MemTotal":947732,"MemFree":601232,"Buffers":20064,"Cached":219768}}'
)


def reason(data: bytes, allow_unsigned: bool = True) -> str:
    with pytest.raises(Rejected) as caught:
        decode(data, {"k1": KEY}, allow_unsigned=allow_unsigned, source="10.0.0.9")
    return caught.value.reason


def signed_with(**changes: object) -> bytes:
    obj = json.loads(encode(SAMPLE, node="n", boot=1, seq=1, ts=1e9, interval=1.0, key=None,
                            key_id="k1"))  # fmt: skip
    obj.update(changes)
    body = json.dumps(obj, separators=(",", ":")).encode()
    from bramble.telemetry.encode import sign

    return sign(body, KEY, "k1")


def test_later_c_daemon_packet_with_nul_padding() -> None:
    packet = decode(LATER_C_DAEMON + b"\0" * 300, {}, allow_unsigned=True, source="10.0.0.9")
    assert packet.node == "10.0.0.9"
    assert packet.sample.cores == (0.25, 0.26, 0.24, 0.28)
    assert packet.sample.cputemp == pytest.approx(51.382)
    assert packet.sample.meminfo["MemTotal"] == 947732


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("cpuusage", 10**400, "bad_value"),  # too big for a float: no OverflowError either
        ("cpufreq", -5, "bad_value"),
        ("loadavg", [0.1, -0.2, 0.3], "bad_value"),
        ("uptime", -1, "bad_value"),
        ("cputemp", 1e300, "bad_value"),
        ("cores", [0.5, 1.5], "bad_value"),
        ("cores", [True], "bad_shape"),
        ("disk", {"total": 1.5}, "bad_shape"),
        ("disk", {"used": 2**64}, "bad_value"),
        ("net", {"eth0": [1, -2]}, "bad_value"),
        ("net", {"eth0": [2**64, 0]}, "bad_value"),
        ("net", {"eth0": [1, 2, 3]}, "bad_shape"),
        ("net", {"\ud800": [1, 2]}, "bad_text"),
        ("net", {"eth 0": [1, 2]}, "bad_text"),
        ("net", {"e" * 16: [1, 2]}, "bad_text"),
        ("net", {"..": [1, 2]}, "bad_text"),
        ("disk", {"us\ud800ed": 1}, "bad_text"),
        ("meminfo", {"MemTotal": 1, "M" * 33: 1}, "bad_text"),
        ("meminfo", [1, 2], "bad_shape"),
        ("throttled", -1, "bad_value"),
        ("throttled", 2**32, "bad_value"),
        ("throttled", "50005", "bad_shape"),
        ("throttled", 5.0, "bad_shape"),
        ("throttled", True, "bad_shape"),
        ("model", 4, "bad_shape"),
        ("model", "", "bad_text"),
        ("model", "Pi\n4", "bad_text"),
        ("model", "P" * 65, "bad_text"),
        ("swap", [1, -1], "bad_value"),
        ("swap", [1, 2**64], "bad_value"),
        ("swap", [1], "bad_shape"),
        ("swap", [1, 2.5], "bad_shape"),
        ("diskio", [2**64, 0], "bad_value"),
        ("diskio", {"read": 1}, "bad_shape"),
        ("fs", {"/": [1, 2]}, "bad_shape"),
        ("fs", {"/": [1, 2, -3]}, "bad_value"),
        ("fs", {"/": [1, 2, 10**400]}, "bad_value"),
        ("fs", {"/": [1, 2, True]}, "bad_shape"),
        ("fs", {f"/d{i}": [1, 1, 0] for i in range(5)}, "bad_shape"),
        ("fs", {"/mnt/usb stick": [1, 1, 0]}, "bad_text"),
        ("fs", {"/" + "x" * 48: [1, 1, 0]}, "bad_text"),
        ("fs", [["/", 1, 1, 0]], "bad_shape"),
    ],
)
def test_unsigned_bad_values_are_refused(field: str, value: object, why: str) -> None:
    obj = json.loads(LATER_C_DAEMON)
    obj[field] = value
    assert reason(json.dumps(obj).encode()) == why


def test_unsigned_odd_meminfo_values_read_as_absent() -> None:
    # the original daemon reads meminfo with scanf's %d: past 2^31 a value wraps or saturates
    obj = json.loads(LATER_C_DAEMON)
    obj["meminfo"] |= {"VmallocTotal": -256, "Odd": True, "Big": 2**63}
    sample = decode(json.dumps(obj).encode(), {}, allow_unsigned=True, source="x").sample
    assert sample.meminfo["MemTotal"] == 947732
    assert not {"VmallocTotal", "Odd", "Big"} & set(sample.meminfo)


def test_signed_odd_meminfo_values_are_refused() -> None:
    assert reason(signed_with(meminfo={"MemTotal": -256}), allow_unsigned=False) == "bad_value"
    assert reason(signed_with(meminfo={"MemTotal": True}), allow_unsigned=False) == "bad_shape"


@pytest.mark.parametrize("value", [b"Infinity", b"-Infinity", b"NaN", b"1e999", b"-1e999"])
def test_non_finite_numbers(value: bytes) -> None:
    assert reason(LATER_C_DAEMON.replace(b'"cpuusage":0.257500', b'"cpuusage":' + value)) == (
        "bad_value"
    )


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"boot": -1}, "bad_value"),
        ({"seq": 1.5}, "bad_shape"),
        ({"seq": 2**63}, "bad_value"),
        ({"v": 2}, "bad_shape"),
        ({"interval": 0}, "bad_value"),
        ({"interval": 3601}, "bad_value"),
        ({"ts": "now"}, "bad_shape"),
        ({"node": "a\nb"}, "bad_text"),
        ({"node": "\ud800"}, "bad_text"),
        ({"node": 7}, "bad_shape"),
    ],
)
def test_signed_bad_header_fields(changes: dict[str, object], why: str) -> None:
    assert reason(signed_with(**changes), allow_unsigned=False) == why


def test_extra_data_and_deep_nesting_are_not_json() -> None:
    assert reason(LATER_C_DAEMON + b" {}") == "not_json"
    assert reason(b"[" * 1300) == "not_json"
    assert reason(b"") == "not_json"


def test_encode_refuses_names_receivers_refuse() -> None:
    with pytest.raises(ValueError, match="node name"):
        encode(SAMPLE, node="x" * 64, boot=1, seq=1, ts=1.0, interval=1.0, key=KEY, key_id="k1")
    with pytest.raises(ValueError, match="key id"):
        encode(SAMPLE, node="n", boot=1, seq=1, ts=1.0, interval=1.0, key=KEY, key_id="a:b")
    with pytest.raises(ValueError, match="finite"):
        encode(SAMPLE._replace(cputemp=float("nan")), node="n", boot=1, seq=1, ts=1.0,
               interval=1.0, key=KEY, key_id="k1")  # fmt: skip


def test_many_interfaces_keep_the_busiest() -> None:
    net = {f"veth{i}": (i, i) for i in range(50)} | {"eth0": (10**12, 10**11)}
    data = encode(SAMPLE._replace(net=net), node="n", boot=1, seq=1, ts=1.0, interval=1.0,
                  key=KEY, key_id="k1")  # fmt: skip
    assert len(data) <= MAX_DATAGRAM
    sample = decode(data, {"k1": KEY}, allow_unsigned=False, source="x").sample
    assert "eth0" in sample.net and "veth49" in sample.net and "veth0" not in sample.net


def test_worst_case_sample_fits_with_a_long_key_id() -> None:
    worst = SAMPLE._replace(
        cores=tuple(0.333333 for _ in range(512)),
        meminfo={f"Field{i:02d}WithALongName": 10**15 for i in range(40)},
        net={f"if{i:012d}": (2**63, 2**63) for i in range(64)},
        disk={"total": 2**63, "used": 2**63, "free": 2**63},
    )
    data = encode(worst, node="n" * 63, boot=2**40, seq=2**40, ts=1.8e9, interval=1.0,
                  key=KEY, key_id="k" * 32)  # fmt: skip
    assert len(data) <= MAX_DATAGRAM
    packet = decode(data, {"k" * 32: KEY}, allow_unsigned=False, source="x")
    assert packet.sample.cpuusage == 0.5 and packet.node == "n" * 63


ORIGINAL = Path(__file__).parent / "fixtures" / "original"


@pytest.mark.parametrize("capture", sorted(ORIGINAL.glob("*.json")), ids=lambda p: p.stem)
def test_the_original_daemons_real_datagrams(capture: Path) -> None:
    data = capture.read_bytes()
    packet = decode(data, {}, allow_unsigned=True, source="10.42.0.23", now=1.0)
    assert packet.node == "10.42.0.23" and not packet.signed
    assert packet.sample.cpufreq == 700 and packet.sample.cputemp == pytest.approx(47.078)
    meminfo = packet.sample.meminfo
    assert meminfo["MemTotal"] == 448776 and meminfo["SwapCached"] == 0
    assert meminfo.get("VmallocTotal", 0) >= 0  # -256 from a 64-bit build reads as absent
    assert len(meminfo) >= 32
    assert reason(data, allow_unsigned=False) == "unsigned"


def test_board_signals_round_trip_and_are_absent_when_not_sent() -> None:
    board = SAMPLE._replace(
        model="Raspberry Pi 5 Model B Rev 1.0",
        throttled=0x50005,
        swap=(1, 2),
        diskio=(512, 0),
        fs={"/": (10, 4, 6), "/boot/firmware": (5, 1, 4)},
    )
    data = encode(board, node="n", boot=1, seq=1, ts=1e9, interval=1.0, key=KEY, key_id="k1")
    packet = decode(data, {"k1": KEY}, allow_unsigned=False, source="x")
    assert packet.sample == board
    plain = encode(SAMPLE, node="n", boot=1, seq=1, ts=1e9, interval=1.0, key=KEY, key_id="k1")
    got = decode(plain, {"k1": KEY}, allow_unsigned=False, source="x").sample
    assert (got.model, got.throttled, got.swap, got.diskio, got.fs) == (None,) * 4 + ({},)
    for key in (b'"model"', b'"throttled"', b'"swap"', b'"diskio"', b'"fs"'):
        assert key not in plain


def test_filesystems_go_before_the_original_keys_when_a_datagram_must_shrink() -> None:
    crowded = SAMPLE._replace(
        cores=(0.123456,) * 128,
        fs={f"/{c * 47}": (2**64 - 1,) * 3 for c in "abcd"},
        model="M" * 64,
        throttled=2**32 - 1,
    )
    data = encode(crowded, node="n" * 63, boot=1, seq=1, ts=1e9, interval=1.0, key=KEY,
                  key_id="k" * 32)  # fmt: skip
    assert len(data) <= MAX_DATAGRAM
    sample = decode(data, {"k" * 32: KEY}, allow_unsigned=False, source="x").sample
    assert sample.throttled == 2**32 - 1 and sample.model == "M" * 64
