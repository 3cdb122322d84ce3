"""The block codec: rows of integer columns under integer timestamps, compressed.

A block holds N rows: a timestamp each (any integers, never decreasing: milliseconds in
history) and K columns of integers (a metric's value scaled to an integer, see `quantize`).
Timestamps are stored as delta-of-delta (a steady 1 Hz sender costs almost nothing), each
column as deltas; each of these series is written at the smallest fixed width that holds it
(0 bytes when constant, 1, 2, 4 or 8), or as zigzag varints when a value needs more than 64
bits. zlib then runs over the whole block when that makes it smaller.

Fixed widths rather than varints for the bulk: the reader rebuilds a column with
`array.frombytes` and `itertools.accumulate`, both in C, which is what makes a chart of
hundreds of thousands of points answer in milliseconds in pure Python; zlib takes out the
zero bytes a fixed width leaves.

Out-of-order timestamps are refused (`ValueError`): the caller sorts a block's rows first.
Equal timestamps are allowed (two samples in one millisecond stay two rows).

Layout: `VERSION`, a flags byte (1: the rest is zlib-compressed), then varints N and K, the
timestamps' series and each column's; a series is a width byte, the first value (zigzag
varint), for timestamps the first delta too, then its body's length (varint) and body.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Callable, Sequence
from itertools import accumulate, pairwise
from typing import TypeVar

T = TypeVar("T")
VERSION = 1
ZLIB = 1
VARINT = 0xFF
"""The width byte of a series stored as zigzag varints (a delta beyond 64 bits)."""
_TYPECODES = {1: "b", 2: "h", 4: "i", 8: "q"}
_BIG = sys.byteorder == "big"


class BlockError(ValueError):
    """A block that cannot be decoded: damaged, truncated, or from a newer version."""


# --- varints ---------------------------------------------------------------------------------


def zigzag(value: int) -> int:
    """VALUE as a non-negative integer: 0, -1, 1, -2 ... become 0, 1, 2, 3 ..."""
    return value * 2 if value >= 0 else -value * 2 - 1


def unzigzag(value: int) -> int:
    """The inverse of `zigzag`."""
    return value >> 1 if not value & 1 else -((value + 1) >> 1)


def put_varint(out: bytearray, value: int) -> None:
    """Append non-negative VALUE to OUT, 7 bits a byte, low bits first."""
    if value < 0:
        raise ValueError(f"a varint cannot be negative: {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def get_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at POS in DATA, and the position after it."""
    value = shift = 0
    while True:
        try:
            byte = data[pos]
        except IndexError:
            raise BlockError("truncated varint") from None
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


# --- one series ------------------------------------------------------------------------------


def _width(values: Sequence[int]) -> int:
    if not values:
        return 0
    low, high = min(values), max(values)
    if low == high == 0:
        return 0
    for width in (1, 2, 4, 8):
        limit = 1 << (8 * width - 1)
        if -limit <= low and high < limit:
            return width
    return VARINT


def _put_series(out: bytearray, values: Sequence[int]) -> None:
    """VALUES (deltas, mostly small) at the narrowest width that holds them."""
    width = _width(values)
    out.append(width)
    if width == 0:
        return
    body = bytearray()
    if width == VARINT:
        for value in values:
            put_varint(body, zigzag(value))
    else:
        packed = array(_TYPECODES[width], values)
        if _BIG:
            packed.byteswap()
        body += packed.tobytes()
    put_varint(out, len(body))
    out += body


def _get_series(data: bytes | memoryview, pos: int, count: int) -> tuple[list[int], int]:
    """COUNT values of the series at POS, and the position after it."""
    if pos >= len(data):
        raise BlockError("truncated series")
    width = data[pos]
    pos += 1
    if width == 0:
        return [0] * count, pos
    size, pos = get_varint(data, pos)
    body = data[pos : pos + size]
    if len(body) != size:
        raise BlockError("truncated series")
    pos += size
    if width == VARINT:
        values, at = [], 0
        for _ in range(count):
            raw, at = get_varint(body, at)
            values.append(unzigzag(raw))
        if at != size:
            raise BlockError("series longer than its rows")
        return values, pos
    code = _TYPECODES.get(width)
    if code is None or size != count * width:
        raise BlockError(f"bad series (width {width}, {size} bytes for {count} values)")
    unpacked = array(code)
    unpacked.frombytes(body)
    if _BIG:
        unpacked.byteswap()
    return unpacked.tolist(), pos


def _skip(data: bytes | memoryview, pos: int) -> tuple[None, int]:
    """Where the series at POS ends, once DATA holds all of it."""
    end = _skip_series(data, pos)
    if end > len(data):
        raise BlockError("truncated series")
    return None, end


def _skip_series(data: bytes | memoryview, pos: int) -> int:
    if pos >= len(data):
        raise BlockError("truncated series")
    if data[pos] == 0:
        return pos + 1
    size, pos = get_varint(data, pos + 1)
    return pos + size


# --- blocks ----------------------------------------------------------------------------------


def encode_block(
    times: Sequence[int], columns: Sequence[Sequence[int]], *, level: int = 6
) -> bytes:
    """A block of len(TIMES) rows: TIMES never decreasing, each of COLUMNS as long as TIMES.

    ValueError when a timestamp goes back or a column's length differs.
    """
    count = len(times)
    for i in range(1, count):
        if times[i] < times[i - 1]:
            raise ValueError(f"timestamps go back at row {i}: {times[i - 1]} then {times[i]}")
    for k, column in enumerate(columns):
        if len(column) != count:
            raise ValueError(f"column {k} has {len(column)} values for {count} timestamps")
    body = bytearray()
    put_varint(body, count)
    put_varint(body, len(columns))
    if count:
        put_varint(body, zigzag(times[0]))
        deltas = [b - a for a, b in pairwise(times)]
        put_varint(body, zigzag(deltas[0] if deltas else 0))
        _put_series(body, [b - a for a, b in pairwise(deltas)])
        for column in columns:
            put_varint(body, zigzag(column[0]))
            _put_series(body, [b - a for a, b in pairwise(column)])
    packed = zlib.compress(body, level) if level else b""
    if packed and len(packed) < len(body):
        return bytes((VERSION, ZLIB)) + packed
    return bytes((VERSION, 0)) + bytes(body)


class Block:
    """A decoded block's header, its timestamps, and its columns decoded on demand.

    A compressed block is inflated only as far as what is read needs: the timestamps and a
    chart's first columns are at its start, so a chart of one metric inflates a fraction of
    each block. `columns` reads it all, and checks that the block ends where its last column
    does (and zlib its checksum)."""

    __slots__ = ("_end", "_offsets", "_raw", "_tail", "_z", "count", "times", "width")

    def __init__(self, data: bytes) -> None:
        if len(data) < 2:
            raise BlockError("truncated block")
        if data[0] != VERSION:
            raise BlockError(f"block version {data[0]}, this bramble reads {VERSION}")
        self._z: zlib._Decompress | None = None
        self._raw = b""
        self._tail = b""
        if data[1] & ZLIB:
            self._z = zlib.decompressobj()
            self._tail = data[2:]
            self._more(256)
        else:
            self._raw = data[2:]
        self.count, pos = self._parse(get_varint, 0)
        self.width, pos = self._parse(get_varint, pos)
        self.times: list[int] = []
        self._offsets: list[int] = []
        self._end = pos
        """Where the column after the last in _offsets starts."""
        if not self.count:
            return
        first, pos = self._parse(get_varint, pos)
        delta, pos = self._parse(get_varint, pos)
        dods, pos = self._parse(lambda d, p: _get_series(d, p, max(0, self.count - 2)), pos)
        self._end = pos
        if self.count == 1:
            self.times = [unzigzag(first)]
        else:
            deltas = accumulate(dods, initial=unzigzag(delta))
            self.times = list(accumulate(deltas, initial=unzigzag(first)))

    def _more(self, want: int) -> bool:
        """Inflate at least WANT more bytes if there are any; False when all are."""
        z = self._z
        if z is None or z.eof:
            return False
        try:
            got = z.decompress(self._tail, max(want, len(self._raw)))
            self._tail = z.unconsumed_tail
            if not self._tail and not z.eof:
                got += z.flush()
        except zlib.error as exc:
            raise BlockError(f"damaged block: {exc}") from None
        if not got and not z.eof:
            raise BlockError("truncated block")
        self._raw += got
        return True

    def _parse(self, read: Callable[[bytes, int], tuple[T, int]], pos: int) -> tuple[T, int]:
        """READ at POS, inflating more of the block until it has what READ needs."""
        while True:
            try:
                return read(self._raw, pos)
            except BlockError:
                if not self._more(4096):
                    raise

    def _offset(self, index: int) -> int:
        """Where column INDEX starts (the columns before it are walked, and inflated)."""
        while len(self._offsets) <= index:
            pos = self._end
            self._offsets.append(pos)
            _, pos = self._parse(get_varint, pos)
            self._end = self._parse(_skip, pos)[1]
        return self._offsets[index]

    def column(self, index: int) -> list[int]:
        """Column INDEX's values, one per row."""
        if not 0 <= index < self.width:
            raise IndexError(f"column {index} of a block of {self.width}")
        if not self.count:
            return []
        first, pos = self._parse(get_varint, self._offset(index))
        deltas, _ = self._parse(lambda d, p: _get_series(d, p, self.count - 1), pos)
        return list(accumulate(deltas, initial=unzigzag(first)))

    def columns(self) -> list[list[int]]:
        """Every column (the whole block is read and checked)."""
        out = [self.column(k) for k in range(self.width)]
        if self.count and self.width:
            self._offset(self.width - 1)
        while self._more(1 << 16):
            pass
        if self._z is not None and not self._z.eof:
            raise BlockError("truncated block")
        if self._end != len(self._raw):
            raise BlockError("block longer than its columns")
        return out


def decode_block(data: bytes) -> tuple[list[int], list[list[int]]]:
    """The timestamps and columns `encode_block` was given."""
    block = Block(data)
    return block.times, block.columns()


# --- scaled integers -------------------------------------------------------------------------


def quantize(value: float, scale: int) -> int:
    """VALUE as an integer count of 1/SCALE units (a value that is not finite counts as 0)."""
    scaled = value * scale
    if scaled != scaled or scaled in (float("inf"), float("-inf")):
        return 0
    return round(scaled)


def dequantize(value: int, scale: int) -> float:
    """The float an integer of `quantize` stands for."""
    return value / scale
