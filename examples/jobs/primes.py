"""Segmented prime sieve: bramble run primes.py [LIMIT] [SEGMENTS].

The base primes up to sqrt(LIMIT) are sieved locally; each task sieves one segment of
[2, LIMIT) with them and returns its count. The check: pi(10**6) = 78498, and in general the
total equals a local sieve's count.
"""

from __future__ import annotations

import math

KNOWN = {10**4: 1229, 10**5: 9592, 10**6: 78498, 10**7: 664579}


def simple_sieve(n: int) -> list[int]:
    """Primes below N."""
    flags = bytearray([1]) * n
    flags[:2] = b"\x00\x00"[: min(2, n)]
    for p in range(2, math.isqrt(n - 1) + 1 if n > 1 else 0):
        if flags[p]:
            flags[p * p :: p] = bytes(len(range(p * p, n, p)))
    return [i for i in range(n) if flags[i]]


def count_segment(lo: int, hi: int, base: list[int]) -> int:
    """Primes in [LO, HI) using the base primes."""
    flags = bytearray([1]) * (hi - lo)
    for p in base:
        if p * p >= hi:
            break
        start = max(p * p, (lo + p - 1) // p * p)
        flags[start - lo :: p] = bytes(len(range(start, hi, p)))
    if lo < 2:
        for i in range(lo, min(2, hi)):
            flags[i - lo] = 0
    return sum(flags)


def main(client, limit: str = "1000000", segments: str = "16") -> int:
    n, k = int(limit), int(segments)
    base = simple_sieve(math.isqrt(n) + 1)
    [base_f] = client.scatter([base], broadcast=True)
    size = -(-n // k)
    futures = [
        client.submit(count_segment, lo, min(n, lo + size), base_f) for lo in range(0, n, size)
    ]
    total = sum(client.gather(futures))
    expected = KNOWN.get(n) or len(simple_sieve(n))
    print(f"{total} primes below {n} ({len(futures)} segments)")
    assert total == expected, f"expected {expected}"
    print("check: ok")
    return total
