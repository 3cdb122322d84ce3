"""The process datagram, pure: reading /proc/PID/stat, choosing the top processes, encoding,
and what the master's decoder accepts and refuses."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from bramble_testing import KEY

from bramble.telemetry.decode import decode, decode_datagram
from bramble.telemetry.encode import encode_procs, sign
from bramble.telemetry.sample import ProcReader, parse_proc_stat, proc_name, top_procs
from bramble.telemetry.wire import (
    MAX_DATAGRAM,
    MAX_PROC_CPU,
    MAX_PROCS,
    Proc,
    ProcsPacket,
    Rejected,
)

KEYS = {"k1": KEY}
STAT = (
    b"2540 (ffmpeg) R 2231 2540 2540 0 -1 4194560 21272 3407 12 3 1801233 22018 0 0 20 0 5 0 "
    b"120551 612007936 61203 18446744073709551615 1 1 0 0 0 0 0 4096 1256 0 0 0 17 0 0 0\n"
)


def test_a_stat_line_gives_name_cpu_ticks_start_and_pages() -> None:
    assert parse_proc_stat(STAT) == ("ffmpeg", 1801233 + 22018, 120551, 61203)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b'a) (b "c"', 'a) (b "c"'),  # the last ")" ends it
        (b"new\nline\ttab", "new?line?tab"),
        (b"bad\xff\xfename", "bad??name"),
        (b"x\xc2\x85y\x7f", "x?y?"),  # C1 control, DEL
        ("ñandú-☃".encode(), "ñandú-☃"),
        ("😀😀😀😀".encode(), "?" * 15),  # cut in the middle of a character: not UTF-8
        (b"a-name-of-forty-characters", "a-name-of-forty"),
        (b"", ""),
    ],
)
def test_process_names_are_cut_and_made_safe(raw: bytes, name: str) -> None:
    assert proc_name(raw) == name
    line = STAT.replace(b"(ffmpeg)", b"(" + raw + b")")
    parsed = parse_proc_stat(line)
    assert parsed is not None and parsed[0] == name


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"2540 ffmpeg R 1 2 3",
        b"2540 (ffmpeg) R 1 2 3 4 5 6 7 8 9 10 11 12",  # too few fields
        STAT.replace(b" 1801233 ", b" 18446744073709551616 "),  # past 64 bits
        STAT.replace(b" 1801233 ", b" 9223372036854775808 "),  # past 2^63 - 1
        STAT.replace(b" 61203 ", b" -1 "),
        STAT.replace(b" 120551 ", b" 12e4 "),
        STAT.replace(b" 1801233 ", " ١٢ ".encode()),  # digits, but not ASCII ones
    ],
)
def test_what_is_not_a_stat_line_is_left_out(line: bytes) -> None:
    assert parse_proc_stat(line) is None


def test_top_processes_by_cpu_then_by_memory_once_each_ties_by_pid() -> None:
    rows = [(f"p{pid}", pid, used, rss) for pid, used, rss in [
        (10, 50, 1), (11, 50, 2), (12, 400, 0), (13, 0, 900), (14, 7, 800), (15, 9, 5),
        (16, 1, 700), (17, 0, 0), (18, 0, 600), (19, 2, 500), (20, 0, 500),
    ]]  # fmt: skip
    procs = top_procs(rows, total=4000, cores=4)
    assert [p.pid for p in procs] == [12, 10, 11, 15, 14, 13, 16, 18, 19]
    assert procs[0] == Proc("p12", 12, 40.0, 0)  # 400 ticks of 1,000 a core: 40 % of one
    assert len(procs) <= MAX_PROCS
    assert top_procs(rows, total=0, cores=4)[0].cpu == 0.0  # no time passed
    assert top_procs([("x", 1, 2**60, 1)], total=4000, cores=4)[0].cpu == MAX_PROC_CPU


def packet(data: bytes, keys: dict[str, bytes] = KEYS) -> ProcsPacket:
    decoded = decode_datagram(data, keys, allow_unsigned=False, source="x")
    assert isinstance(decoded, ProcsPacket)
    return decoded


def test_encoded_processes_decode_to_the_same() -> None:
    procs = [Proc("ffmpeg", 2540, 282.2, 250 * 2**20), Proc('a) "b"\\', 7, 0.0, 4096)]
    data = encode_procs(procs, node="pi-4", boot=17, seq=99, ts=1764060000.25, key=KEY,
                        key_id="k1")  # fmt: skip
    assert data.startswith(b'{"v":1,"node":"pi-4","boot":17,"seq":99,"ts":1764060000.25,"procs"')
    got = packet(data)
    assert (got.node, got.boot, got.seq, got.ts, got.key_id) == (
        "pi-4",
        17,
        99,
        1764060000.25,
        "k1",
    )
    assert list(got.procs) == procs
    with pytest.raises(Rejected) as refused:  # the samples' decoder does not take it
        decode(data, KEYS, allow_unsigned=True, source="x")
    assert refused.value.reason == "bad_shape"


def test_rows_are_left_out_until_the_datagram_fits() -> None:
    wide = "☃" * 63  # six bytes each in JSON
    procs = [Proc("é" * 7, pid, 999999.9, 2**63 - 1) for pid in range(2**22 - 9, 2**22 + 1)]
    data = encode_procs(procs, node=wide, boot=2**63 - 1, seq=2**63 - 1, ts=1e11, key=KEY,
                        key_id="x" * 32)  # fmt: skip
    assert len(data) <= MAX_DATAGRAM
    kept = packet(data, {"x" * 32: KEY}).procs
    assert 0 < len(kept) < 10 and list(kept) == procs[: len(kept)]


def body(**fields: object) -> dict[str, object]:
    out: dict[str, object] = {"v": 1, "node": "pi-4", "boot": 17, "seq": 99, "ts": 1.5,
                              "procs": [["ffmpeg", 2540, 28.5, 4096]]}  # fmt: skip
    out.update(fields)
    return out


HEAD = '{"v":1,"node":"pi-4","boot":17,"seq":99,"ts":1.5,"procs":'


def signed(obj: dict[str, object] | str) -> bytes:
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return sign(text.encode(), KEY, "k1")


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        (body(procs={"ffmpeg": 1}), "bad_shape"),
        (body(procs=[["p", pid, 1.0, 1] for pid in range(1, MAX_PROCS + 2)]), "bad_shape"),
        (body(procs=[["ffmpeg", 2540, 28.5]]), "bad_shape"),
        (body(procs=[[1, 2540, 28.5, 4096]]), "bad_shape"),
        (body(procs=[["ffmpeg", 2540.0, 28.5, 4096]]), "bad_shape"),
        (body(procs=[["ffmpeg", 2540, "28.5", 4096]]), "bad_shape"),
        (body(procs=[["ffmpeg", 2540, True, 4096]]), "bad_shape"),
        (body(procs=[["x" * 16, 2540, 28.5, 4096]]), "bad_text"),
        (body(procs=[["new\nline", 2540, 28.5, 4096]]), "bad_text"),
        (body(procs=[["x\x85", 2540, 28.5, 4096]]), "bad_text"),
        (body(procs=[["x\ud800", 2540, 28.5, 4096]]), "bad_text"),
        (body(procs=[["ffmpeg", 0, 28.5, 4096]]), "bad_value"),
        (body(procs=[["ffmpeg", 2**22 + 1, 28.5, 4096]]), "bad_value"),
        (body(procs=[["ffmpeg", 2540, -0.1, 4096]]), "bad_value"),
        (body(procs=[["ffmpeg", 2540, MAX_PROC_CPU * 2, 4096]]), "bad_value"),
        (body(procs=[["ffmpeg", 2540, 28.5, 2**63]]), "bad_value"),
        (body(procs=[["ffmpeg", 2540, 28.5, -1]]), "bad_value"),
        (body(procs=[["a", 5, 1.0, 1], ["b", 5, 2.0, 2]]), "bad_value"),
        (body(node=""), "bad_text"),
        (body(seq=-1), "bad_value"),
        (body(v=2), "bad_shape"),
        (body(ts=None), "bad_shape"),
        (HEAD + '[["a",1,1e999,1]]}', "bad_value"),
        (HEAD + '[["a",1,NaN,1]]}', "bad_value"),
        (HEAD + "[" * 5000 + "]" * 5000 + "}", "oversize"),
    ],
)  # fmt: skip
def test_hostile_process_datagrams_are_refused_with_a_reason(
    hostile: dict[str, object] | str, reason: str
) -> None:
    with pytest.raises(Rejected) as refused:
        decode_datagram(signed(hostile), KEYS, allow_unsigned=False, source="x")
    assert refused.value.reason == reason


def test_process_datagrams_must_be_signed() -> None:
    text = json.dumps(body(), separators=(",", ":")).encode()
    with pytest.raises(Rejected) as refused:
        decode_datagram(text, KEYS, allow_unsigned=True, source="x")
    assert refused.value.reason == "unsigned"
    forged = signed(body())[:-3] + b'00"}'
    with pytest.raises(Rejected) as refused:
        decode_datagram(forged, KEYS, allow_unsigned=True, source="x")
    assert refused.value.reason == "bad_signature"


def test_numbers_in_range_are_kept_as_sent() -> None:
    got = packet(signed(body(procs=[["", 2**22, MAX_PROC_CPU, 2**63 - 1], ["b", 1, 0, 0]])))
    assert got.procs == (Proc("", 2**22, MAX_PROC_CPU, 2**63 - 1), Proc("b", 1, 0.0, 0))
    assert all(math.isfinite(p.cpu) for p in got.procs)


def test_stat_files_stay_open_between_rounds_and_close_when_processes_end(
    tmp_path: Path,
) -> None:
    for pid in (10, 11, 12):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_bytes(STAT.replace(b"2540 ", b"%d " % pid, 1))
    reader = ProcReader(str(tmp_path), 4096)
    fds = len(os.listdir("/proc/self/fd"))
    try:
        assert reader.read(1000, 1) is None
        assert len(os.listdir("/proc/self/fd")) == fds + 3  # kept for the next round
        (tmp_path / "11" / "stat").write_bytes(b"")  # ended
        (tmp_path / "12" / "stat").unlink()
        (tmp_path / "12").rmdir()
        busier = STAT.replace(b"2540 ", b"10 ", 1).replace(b" 1801233 ", b" 1801333 ")
        (tmp_path / "10" / "stat").write_bytes(busier)  # in place: the kept file reads it
        procs = reader.read(2000, 1)
        assert procs is not None and [(p.pid, p.cpu) for p in procs] == [(10, 10.0)]
        assert len(os.listdir("/proc/self/fd")) == fds + 1
    finally:
        reader.close()
    assert len(os.listdir("/proc/self/fd")) == fds


def test_a_process_that_ends_is_dropped_and_its_kept_file_closed() -> None:
    # This machine's /proc: the kept file of a process that has ended fails to read (ESRCH).
    child = subprocess.Popen(["sleep", "60"])
    reader = ProcReader()
    try:
        assert reader.read(1000, 1) is None
        kept = reader._fds[child.pid]
        started = subprocess.Popen(["sleep", "60"])  # a process new in the second round
        try:
            assert reader.read(2000, 1) is not None
            assert started.pid in reader._fds and reader._fds[child.pid] == kept
        finally:
            started.kill()
            started.wait()
        child.kill()
        child.wait()
        after = reader.read(3000, 1)
        assert after is not None and child.pid not in {p.pid for p in after}
        assert child.pid not in reader._fds and started.pid not in reader._fds
    finally:
        child.kill()
        child.wait()
        reader.close()
