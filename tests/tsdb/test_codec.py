"""The block codec: exact round trips of whatever history may hold, refusals, damage."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bramble.tsdb.codec import (
    Block,
    BlockError,
    decode_block,
    dequantize,
    encode_block,
    get_varint,
    put_varint,
    quantize,
    unzigzag,
    zigzag,
)

INT64 = (-(1 << 63), (1 << 63) - 1)
huge = st.integers(min_value=-(1 << 80), max_value=1 << 80)


@st.composite
def times(draw: st.DrawFn, rows: int) -> list[int]:
    """Millisecond timestamps of a sender at about 1 Hz, with jitter, gaps and repeats."""
    t = draw(st.integers(min_value=0, max_value=1 << 45))
    out = []
    for _ in range(rows):
        out.append(t)
        t += draw(
            st.one_of(
                st.integers(min_value=990, max_value=1010),  # jitter
                st.integers(min_value=0, max_value=0),  # two samples in one millisecond
                st.integers(min_value=1, max_value=10**9),  # a gap (a node that was off)
            )
        )
    return out


@st.composite
def walk(draw: st.DrawFn, rows: int) -> list[int]:
    """A random walk, a constant, a counter with resets, or anything at all."""
    kind = draw(st.sampled_from(["walk", "constant", "counter", "extreme", "huge"]))
    if kind == "constant":
        return [draw(huge)] * rows
    if kind == "extreme":
        return [draw(st.sampled_from((*INT64, 0, -1, 1))) for _ in range(rows)]
    if kind == "huge":
        return [draw(huge) for _ in range(rows)]
    value = draw(st.integers(min_value=-(1 << 40), max_value=1 << 40))
    out = []
    for _ in range(rows):
        out.append(value)
        if kind == "walk":
            value += draw(st.integers(min_value=-500, max_value=500))
        elif draw(st.integers(min_value=0, max_value=20)) == 0:
            value = 0  # the counter's node rebooted
        else:
            value += draw(st.integers(min_value=0, max_value=1 << 20))
    return out


@st.composite
def blocks(draw: st.DrawFn) -> tuple[list[int], list[list[int]]]:
    rows = draw(st.integers(min_value=0, max_value=80))
    width = draw(st.integers(min_value=0, max_value=6))
    return draw(times(rows)), [draw(walk(rows)) for _ in range(width)]


@settings(max_examples=150, deadline=None)
@given(blocks(), st.sampled_from([0, 1, 6, 9]))
def test_blocks_round_trip_exactly(block: tuple[list[int], list[list[int]]], level: int) -> None:
    ts, columns = block
    data = encode_block(ts, columns, level=level)
    got_ts, got_columns = decode_block(data)
    assert got_ts == ts
    assert got_columns == (columns if ts else [[] for _ in columns])
    decoded = Block(data)
    for k in range(len(columns)):  # one column alone, as a chart reads it
        assert decoded.column(k) == (columns[k] if ts else [])
    backwards = Block(data)  # the last first: the ones before are walked on the way
    for k in reversed(range(len(columns))):
        assert backwards.column(k) == (columns[k] if ts else [])


def test_a_column_is_read_without_inflating_the_columns_after_it() -> None:
    rng = random.Random(1)
    ts = [1_800_000_000_000 + 1000 * i for i in range(600)]
    columns = [[rng.randrange(1 << 20) for _ in ts] for _ in range(20)]
    data = encode_block(ts, columns)
    whole = len(zlib.decompress(data[2:]))
    block = Block(data)
    assert block.column(0) == columns[0]
    assert len(block._raw) < whole / 4  # the timestamps and the first column, about
    assert block.column(19) == columns[19] and len(block._raw) == whole


@given(st.integers(min_value=-(1 << 100), max_value=1 << 100))
def test_varints_and_zigzag_round_trip(value: int) -> None:
    assert unzigzag(zigzag(value)) == value and zigzag(value) >= 0
    out = bytearray()
    put_varint(out, zigzag(value))
    assert get_varint(bytes(out), 0) == (zigzag(value), len(out))


@given(st.lists(st.integers(min_value=0, max_value=1 << 50), min_size=2, max_size=30))
def test_out_of_order_timestamps_are_refused(ts: list[int]) -> None:
    if ts == sorted(ts):
        encode_block(ts, [])
    else:
        with pytest.raises(ValueError, match="timestamps go back"):
            encode_block(ts, [])


def test_columns_must_match_the_timestamps() -> None:
    with pytest.raises(ValueError, match="column 1 has 1 values for 2"):
        encode_block([1, 2], [[1, 2], [3]])


def test_a_steady_sender_costs_little() -> None:
    ts = [1_800_000_000_000 + 1000 * i for i in range(300)]
    cpu = [2500 + (i * 37 % 11) - 5 for i in range(300)]  # cpuusage at 1e-4, wandering
    data = encode_block(ts, [cpu, [3_884_088] * 300])
    assert len(data) < 300  # under a byte a row for both columns and the timestamps
    assert decode_block(data) == (ts, [cpu, [3_884_088] * 300])


@given(blocks(), st.data())
def test_damage_is_reported_never_crashes(
    block: tuple[list[int], list[list[int]]], data: st.DataObject
) -> None:
    encoded = encode_block(*block, level=0)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(BlockError):
        Block(encoded[:cut]).columns()
    packed = encode_block(*block, level=9)
    if packed[1]:
        with pytest.raises(BlockError):  # found once the block is read to its end
            Block(packed[:-3] + b"xyz" if len(packed) > 5 else packed[:2]).columns()


def test_other_versions_are_refused() -> None:
    with pytest.raises(BlockError, match="version 2"):
        Block(bytes((2, 0)) + zlib.compress(b"\0\0"))


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_quantize_keeps_a_value_to_its_scale(value: float) -> None:
    for scale in (1, 10, 100, 1000, 10_000):
        error = abs(dequantize(quantize(value, scale), scale) - value)
        assert error <= 0.5 / scale + abs(value) * 1e-15


def test_quantize_counts_what_is_not_finite_as_zero() -> None:
    assert quantize(float("nan"), 10) == 0 and quantize(float("inf"), 10) == 0
    assert quantize(1e300, 10) == int(1e301)  # large, but finite: kept
