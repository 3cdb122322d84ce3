"""Mandelbrot set image: bramble run mandelbrot.py [WIDTH] [HEIGHT] [OUT].

Rows are computed in parallel (one task per band of rows) and written as a binary PGM,
by default ``mandelbrot.pgm`` next to this file in the jobs directory. The check: the image
has the right size, the point -1+0i (inside the set) is black and 1+1i (outside) is not.
"""

from __future__ import annotations

import sys
from pathlib import Path

MAX_ITER = 200
X0, X1, Y0, Y1 = -2.2, 1.0, -1.2, 1.2


def escape(cx: float, cy: float) -> int:
    """Iterations before z escapes (MAX_ITER if it never does)."""
    zx = zy = 0.0
    for i in range(MAX_ITER):
        zx, zy = zx * zx - zy * zy + cx, 2 * zx * zy + cy
        if zx * zx + zy * zy > 4.0:
            return i
    return MAX_ITER


def band(y_start: int, y_end: int, width: int, height: int) -> bytes:
    """Grey levels of rows Y_START..Y_END (0 = inside the set)."""
    out = bytearray()
    for y in range(y_start, y_end):
        cy = Y0 + (Y1 - Y0) * y / (height - 1)
        for x in range(width):
            cx = X0 + (X1 - X0) * x / (width - 1)
            n = escape(cx, cy)
            out.append(0 if n == MAX_ITER else 40 + (215 * n) // MAX_ITER)
    return bytes(out)


def pixel(data: bytes, width: int, height: int, cx: float, cy: float) -> int:
    x = round((cx - X0) / (X1 - X0) * (width - 1))
    y = round((cy - Y0) / (Y1 - Y0) * (height - 1))
    return data[y * width + x]


def main(client, width: str = "320", height: str = "240", out: str = "") -> str:
    w, h = int(width), int(height)
    step = max(1, h // 24)
    bands = [(y, min(h, y + step)) for y in range(0, h, step)]
    futures = [client.submit(band, a, b, w, h) for a, b in bands]
    data = b"".join(client.gather(futures))
    path = Path(out) if out else Path(sys.argv[0]).resolve().parent / "mandelbrot.pgm"
    path.write_bytes(f"P5\n{w} {h}\n255\n".encode() + data)
    assert len(data) == w * h, "wrong image size"
    assert pixel(data, w, h, -1.0, 0.0) == 0, "-1+0i must be in the set"
    assert pixel(data, w, h, 0.9, 1.1) != 0, "0.9+1.1i must be outside the set"
    print(f"wrote {path} ({w}x{h}, {len(bands)} tasks)")
    print("check: ok")
    return str(path)
