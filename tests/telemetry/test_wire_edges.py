"""Wire edge cases: the original daemon's later format, numbers JSON allows but we refuse."""

from __future__ import annotations

import json

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
    ("field", "value"),
    [
        ("cpuusage", 10**400),  # an integer too big for a float must not raise OverflowError
        ("cpufreq", -5),
        ("loadavg", [0.1, -0.2, 0.3]),
        ("uptime", -1),
        ("cputemp", 1e300),
        ("cores", [0.5, 1.5]),
        ("cores", [True]),
        ("disk", {"total": 1.5}),
        ("net", {"eth0": [1, -2]}),
        ("net", {"eth0": [1, 2, 3]}),
        ("meminfo", {"MemTotal": True}),
        ("meminfo", [1, 2]),
    ],
)
def test_unsigned_bad_values_are_bad_shape(field: str, value: object) -> None:
    obj = json.loads(LATER_C_DAEMON)
    obj[field] = value
    assert reason(json.dumps(obj).encode()) == "bad_shape"


@pytest.mark.parametrize(
    "text",
    [b'{"cpuusage": Infinity}', b'{"cpuusage": -Infinity}', b'{"cpuusage": 1e999}'],
)
def test_non_finite_numbers(text: bytes) -> None:
    assert reason(text) == "bad_shape"


@pytest.mark.parametrize(
    "changes",
    [{"boot": -1}, {"seq": 1.5}, {"v": 2}, {"interval": 0}, {"ts": "now"}, {"node": "a\nb"}],
)
def test_signed_bad_header_fields(changes: dict[str, object]) -> None:
    assert reason(signed_with(**changes), allow_unsigned=False) == "bad_shape"


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
