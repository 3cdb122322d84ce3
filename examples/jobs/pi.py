"""Monte Carlo estimate of pi across the cluster: bramble run pi.py [SAMPLES] [TASKS].

Each task throws SAMPLES/TASKS random darts at the unit square with its own seed; the
driver adds up the hits and checks the estimate is within six standard errors of pi.
"""

from __future__ import annotations

import math
import random


def hits(seed: int, n: int) -> int:
    """Darts out of N that land inside the quarter circle."""
    rng = random.Random(seed)
    return sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)


def main(client, samples: str = "2000000", tasks: str = "40") -> float:
    total, ntasks = int(samples), int(tasks)
    per = total // ntasks
    futures = client.map(hits, range(ntasks), [per] * ntasks)
    inside = sum(client.gather(futures))
    n = per * ntasks
    estimate = 4.0 * inside / n
    p = math.pi / 4
    stderr = 4.0 * math.sqrt(p * (1 - p) / n)
    print(
        f"pi ~ {estimate:.6f} from {n} samples in {ntasks} tasks (error {estimate - math.pi:+.6f})"
    )
    assert abs(estimate - math.pi) < 6 * stderr, "estimate too far from pi"
    print("check: ok")
    return estimate
