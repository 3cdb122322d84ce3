"""Whether a board that asks to enroll gets credentials, waits for approval, or is refused.

Pure: the request, what the master knows (the spec's MACs, its DHCP leases, the nodes it has
enrolled, the join tokens) and the current time in; a `Decision` out. The gate's rate limit
and seen-nonce memory are plain state with the time passed in.

The rules, in order:

1. too many requests from one address, or from all → refused (rate limited);
2. a join token that is not one of the master's → refused; one rotated out and past its
   overlap → refused (expired);
3. a nonce seen before → refused (replayed);
4. a MAC whose node was revoked → pending: only an admin brings it back;
5. a MAC already enrolled with the same key → enrolled again, same name (a retry after a
   lost answer or a master crash enrolls a board once, never twice); with a new key and a
   proof made with its current key → enrolled, same name (a key rotation);
6. policy `auto`, the MAC in the spec, and the request from the address the master's own
   DHCP server leased to that MAC → enrolled with the spec's name;
7. anything else → pending, with the reason, until `bramble nodes approve`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["enrolled", "pending", "refused"]
TokenCheck = Literal["ok", "bad", "expired"]

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
NONCE_TTL = 3600.0
"""Seconds a nonce is remembered: a retry uses a fresh one, a replay repeats one."""


@dataclass(frozen=True, slots=True)
class JoinToken:
    """A join token the master accepts: the current one (NOT_AFTER None), or one rotated out
    that still works until NOT_AFTER (epoch seconds), so boards flashed before keep joining."""

    token: str
    not_after: float | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """One enrollment request, as the master received it."""

    mac: str
    address: str
    """The address the request came from (the TCP peer), never what the body claims."""
    key_id: str
    key_digest: str
    """SHA-256 of the node's telemetry key, hex: 'the same key' without holding it here."""
    token: str
    nonce: str


@dataclass(frozen=True, slots=True)
class Known:
    """A MAC the master has enrolled: under NAME, with the key of KEY_DIGEST; REVOKED once
    an admin ended its credentials."""

    name: str
    key_digest: str
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """What the master does with a request: OUTCOME, the node's NAME ('' if none yet) and why."""

    outcome: Outcome
    name: str
    reason: str


def normal_mac(mac: str) -> str:
    """MAC in the spec's spelling (lower case, colons); ValueError if it is not one."""
    out = mac.strip().lower().replace("-", ":")
    if not MAC_RE.match(out):
        raise ValueError(f"{mac!r} is not a MAC address")
    return out


def check_token(presented: str, tokens: Sequence[JoinToken], now: float) -> TokenCheck:
    """Whether PRESENTED is a join token the master accepts at NOW."""
    import hmac

    for known in tokens:
        if hmac.compare_digest(presented.encode(), known.token.encode()):
            if known.not_after is not None and now > known.not_after:
                return "expired"
            return "ok"
    return "bad"


class RateLimit:
    """A token bucket per source address and one for all: PER_MINUTE requests a minute from
    one address (bursts of as many), ten times that from all. Time is passed in."""

    def __init__(self, per_minute: int, *, max_addresses: int = 4096) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._all = (self.burst * 10, 0.0)

    @staticmethod
    def _take(bucket: tuple[float, float], rate: float, burst: float, now: float) -> float:
        level, last = bucket
        return min(burst, level + max(0.0, now - last) * rate) - 1

    def allow(self, address: str, now: float) -> bool:
        """Whether a request from ADDRESS at NOW is answered (and count it if so)."""
        level = self._take(self._all, self.rate * 10, self.burst * 10, now)
        if level < 0:
            return False
        mine = self._buckets.pop(address, (self.burst, now))
        left = self._take(mine, self.rate, self.burst, now)
        if left < 0:
            self._buckets[address] = (left + 1, now)
            return False
        self._all = (level, now)
        self._buckets[address] = (left, now)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        return True


class Nonces:
    """The nonces seen in the last TTL seconds (at most LIMIT of them)."""

    def __init__(self, ttl: float = NONCE_TTL, limit: int = 65536) -> None:
        self.ttl = ttl
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen(self, nonce: str, now: float) -> bool:
        """Whether NONCE was seen already (and remember it from NOW if not)."""
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self.ttl and len(self._seen) < self.limit:
                break
            del self._seen[oldest]
        if nonce in self._seen:
            return True
        self._seen[nonce] = now
        return False


def decide(
    request: Request,
    *,
    policy: Literal["auto", "manual"],
    spec_macs: Mapping[str, str],
    leases: Mapping[str, str],
    known: Mapping[str, Known],
    token: TokenCheck,
    limited: bool,
    replayed: bool,
    proved: bool = False,
) -> Decision:
    """The decision on REQUEST (see the module's rules). SPEC_MACS maps MAC to the spec's
    node name, LEASES MAC to the address the master's DHCP server leased it, KNOWN MAC to
    what the master enrolled; TOKEN, LIMITED and REPLAYED are the gate's checks; PROVED,
    whether the request carries a proof made with the MAC's current key."""
    mac = request.mac
    if limited:
        return Decision("refused", "", f"rate limited: too many requests from {request.address}")
    if token == "bad":
        return Decision("refused", "", "bad join token")
    if token == "expired":
        return Decision("refused", "", "expired join token (rotated out): reflash the board")
    if replayed:
        return Decision("refused", "", "replayed request (nonce seen before)")
    node = known.get(mac)
    if node is not None and node.revoked:
        return Decision("pending", node.name, f"{node.name} was revoked: an admin must approve")
    if node is not None and node.key_digest == request.key_digest:
        return Decision("enrolled", node.name, f"{node.name} is enrolled with this key")
    if node is not None and proved:
        return Decision("enrolled", node.name, f"{node.name} rotates its key")
    name = spec_macs.get(mac)
    if policy == "manual":
        return Decision("pending", name or "", "enroll.policy is manual")
    if name is None:
        return Decision("pending", "", f"{mac} is not in the spec")
    leased = leases.get(mac)
    if leased is None:
        return Decision("pending", name, f"no DHCP lease of the master's for {mac}")
    if leased != request.address:
        return Decision(
            "pending",
            name,
            f"request from {request.address}, but the master leased {leased} to {mac}",
        )
    again = " again, with a new key" if node is not None else ""
    return Decision("enrolled", name, f"{mac} is {name} in the spec and asks from its lease{again}")


DAY = 86400.0


def rotation_due(enrolled: float, *, now: float, rotate_days: float, marked: float | None) -> str:
    """Why a node enrolled (or last rotated) at ENROLLED must rotate its keys at NOW, or ''
    if it need not: the admin MARKED it due after that (`bramble keys rotate --nodes`), or
    its keys are ROTATE_DAYS old (0: never by age)."""
    if marked is not None and marked > enrolled:
        return "the admin asked for a rotation (bramble keys rotate --nodes)"
    age = now - enrolled
    if rotate_days > 0 and age >= rotate_days * DAY:
        return f"its keys are {age / DAY:.1f} days old (enroll.rotate_days = {rotate_days:g})"
    return ""
