"""The enrollment policy, pure: who is enrolled, who waits, who is refused; time passed in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bramble.trust.leases import parse_leases
from bramble.trust.policy import (
    JoinToken,
    Known,
    Nonces,
    RateLimit,
    Request,
    check_token,
    decide,
    normal_mac,
    rotation_due,
)

MAC = "b8:27:eb:00:00:01"
SPEC = {MAC: "node-1", "b8:27:eb:00:00:02": "node-2"}
LEASES = {MAC: "10.42.0.11", "b8:27:eb:00:00:02": "10.42.0.12"}
REQUEST = Request(
    mac=MAC,
    address="10.42.0.11",
    key_id="n-0123456789abcdef",
    key_digest="aa" * 32,
    token="join-token-0123456789",
    nonce="n" * 32,
)
LEASE_FILE = """\
1764640000 b8:27:eb:00:00:01 10.42.0.11 node-1 01:b8:27:eb:00:00:01
0 b8:27:eb:00:00:02 10.42.0.12 node-2 *
1000 b8:27:eb:00:00:03 10.42.0.13 node-3 *
garbage line
"""


def _decide(request: Request = REQUEST, **given: object) -> tuple[str, str, str]:
    args: dict[str, object] = {
        "policy": "auto",
        "spec_macs": SPEC,
        "leases": LEASES,
        "known": {},
        "token": "ok",
        "limited": False,
        "replayed": False,
    }
    args.update(given)
    decision = decide(request, **args)  # type: ignore[arg-type]
    return decision.outcome, decision.name, decision.reason


def test_spec_mac_from_its_lease_is_enrolled_with_the_spec_name() -> None:
    assert _decide()[:2] == ("enrolled", "node-1")


def test_wrong_address_unknown_mac_or_no_lease_waits() -> None:
    outcome, name, reason = _decide(replace(REQUEST, address="10.42.0.99"))
    assert (outcome, name) == ("pending", "node-1") and "leased 10.42.0.11" in reason
    outcome, name, reason = _decide(replace(REQUEST, mac="02:00:00:00:00:09"))
    assert (outcome, name) == ("pending", "") and "not in the spec" in reason
    assert _decide(leases={})[0] == "pending"
    assert _decide(policy="manual")[:2] == ("pending", "node-1")


def test_bad_expired_replayed_or_limited_is_refused() -> None:
    assert _decide(token="bad") == ("refused", "", "bad join token")
    assert "expired" in _decide(token="expired")[2]
    assert "replayed" in _decide(replayed=True)[2]
    assert "rate limited" in _decide(limited=True)[2]


def test_known_key_is_enrolled_again_and_revoked_waits() -> None:
    known = {MAC: Known("node-1", REQUEST.key_digest)}
    # the same key from anywhere is the same board asking again (its answer was lost)
    again = replace(REQUEST, address="10.42.0.99")
    assert _decide(again, known=known)[:2] == ("enrolled", "node-1")
    assert _decide(again, known=known, policy="manual")[:2] == ("enrolled", "node-1")
    # a new key needs the policy again
    other = replace(again, key_digest="bb" * 32)
    assert _decide(other, known=known)[0] == "pending"
    assert "again" in _decide(replace(REQUEST, key_digest="bb" * 32), known=known)[2]
    revoked = {MAC: Known("node-1", REQUEST.key_digest, revoked=True)}
    assert _decide(known=revoked)[:2] == ("pending", "node-1")


def test_join_tokens_rotate_with_an_overlap() -> None:
    tokens = [JoinToken("new-token-0123456789"), JoinToken("old-token-0123456789", 100.0)]
    assert check_token("new-token-0123456789", tokens, 1000.0) == "ok"
    assert check_token("old-token-0123456789", tokens, 50.0) == "ok"
    assert check_token("old-token-0123456789", tokens, 101.0) == "expired"
    assert check_token("guess", tokens, 0.0) == "bad"


def test_rate_limit_per_address_and_overall() -> None:
    limit = RateLimit(per_minute=6)
    assert [limit.allow("a", 0.0) for _ in range(7)] == [True] * 6 + [False]
    assert limit.allow("b", 0.0)
    assert not limit.allow("a", 5.0)
    assert limit.allow("a", 10.0)  # one a minute / 6 = every 10 s
    crowd = RateLimit(per_minute=6)
    allowed = sum(crowd.allow(f"10.0.{i // 250}.{i % 250}", 0.0) for i in range(100))
    assert allowed == 60


def test_nonces_remembered_for_their_ttl() -> None:
    nonces = Nonces(ttl=10.0)
    assert not nonces.seen("x" * 16, 0.0)
    assert nonces.seen("x" * 16, 5.0)
    assert not nonces.seen("x" * 16, 20.0)


def test_leases_parse_and_expire() -> None:
    assert parse_leases(LEASE_FILE, now=2000.0) == {
        "b8:27:eb:00:00:01": "10.42.0.11",
        "b8:27:eb:00:00:02": "10.42.0.12",
    }


def test_normal_mac() -> None:
    assert normal_mac("B8-27-EB-00-00-01") == MAC
    with pytest.raises(ValueError):
        normal_mac("nope")


def test_a_proven_new_key_is_a_rotation() -> None:
    known = {MAC: Known("node-1", "bb" * 32)}
    moved = replace(REQUEST, address="10.42.0.99")
    assert _decide(moved, known=known, proved=True)[:2] == ("enrolled", "node-1")
    assert _decide(moved, known=known, proved=False)[0] == "pending"
    revoked = {MAC: Known("node-1", "bb" * 32, revoked=True)}
    assert _decide(moved, known=revoked, proved=True)[0] == "pending"


def test_rotation_due_by_age_or_by_the_admin() -> None:
    day = 86400.0
    enrolled = 1_000_000.0

    def due(now: float, days: float = 30, marked: float | None = None) -> str:
        return rotation_due(enrolled, now=now, rotate_days=days, marked=marked)

    assert due(enrolled + 29.9 * day) == ""
    assert "30.0 days old" in due(enrolled + 30 * day)
    assert due(enrolled + 3650 * day, days=0) == ""  # 0: never by age
    # the admin's mark counts until the node rotates (enrolls again) after it
    assert "admin" in due(enrolled + 1, days=0, marked=enrolled + 0.5)
    assert due(enrolled + 1, days=0, marked=enrolled) == ""
    assert due(enrolled + 1, days=0, marked=enrolled - 5) == ""
