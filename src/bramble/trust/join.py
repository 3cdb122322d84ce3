"""Rotating the join token: a new one for the images flashed from now on; the old one keeps
working for an overlap, so boards flashed before (and not yet enrolled) still join."""

from __future__ import annotations

import dataclasses
import secrets as random

from bramble.spec import Secrets

OVERLAP_DAYS = 7.0


def rotate_join(current: Secrets, now: float, overlap_days: float = OVERLAP_DAYS) -> Secrets:
    """CURRENT with a fresh join token; the one it had stays good OVERLAP_DAYS from NOW."""
    return dataclasses.replace(
        current,
        join_token=random.token_urlsafe(32),
        join_previous=current.join_token,
        join_previous_until=now + overlap_days * 86400 if current.join_token else 0.0,
    )
