"""A slow job for trying cancel and failover: bramble run sleepy.py [TASKS] [SECONDS].

TASKS tasks each sleep SECONDS and return their index; the check is that every index came
back exactly once, whichever worker ran it (tasks of a lost worker are rerun elsewhere).
"""

from __future__ import annotations

import time


def nap(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i


def main(client, tasks: str = "20", seconds: str = "0.5") -> int:
    n, s = int(tasks), float(seconds)
    print(f"started {n} tasks of {s}s", flush=True)
    results = client.gather(client.map(nap, range(n), [s] * n, pure=False))
    assert sorted(results) == list(range(n)), "lost or duplicated results"
    print("check: ok")
    return len(results)
