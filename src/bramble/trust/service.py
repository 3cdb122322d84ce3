"""Enrollment on the master: requests decided by `policy`, credentials kept in the `store`,
each decision logged and told as a change (an event on the dashboard).

The service is plain and synchronous (the API calls it off the event loop); what the
collector needs, the telemetry keys by key id and the node each is bound to, it reads with
`credentials()` after every change.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bramble.errors import BrambleError
from bramble.jobs.gate import format_revocations
from bramble.master.views import Change, ChangeKind
from bramble.spec import Spec
from bramble.trust.certs import Ca, CsrError, sign_worker
from bramble.trust.policy import (
    Decision,
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
from bramble.trust.store import REFUSED, NodeCredentials, PendingRequest, TrustStore

log = logging.getLogger(__name__)

SHARED_KEY = "shared_key"
"""The store's setting that says whether the cluster's shared telemetry key still works."""
MIN_KEY, MAX_KEY = 16, 64
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class EnrollBody(BaseModel):
    """What a board sends to enroll (the join token goes in `Authorization: Bearer`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mac: str = Field(description="the board's MAC on the cluster interface")
    key: str = Field(description="the board's own telemetry key, made on the board, hex")
    nonce: str = Field(description="fresh for every request: 16 to 64 letters, digits, _ or -")
    csr: str = Field(default="", max_length=8192, description="PEM CSR for its worker cert")
    proof: str = Field(
        default="",
        max_length=64,
        description="a key rotation: rotation_proof() made with the board's current key",
    )

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return normal_mac(value)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise ValueError("the key must be hex") from None
        if not MIN_KEY <= len(raw) <= MAX_KEY:
            raise ValueError(f"the key must be {MIN_KEY} to {MAX_KEY} bytes")
        return raw.hex()

    @field_validator("nonce")
    @classmethod
    def _nonce(cls, value: str) -> str:
        return _checked_nonce(value)


def _checked_nonce(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", value):
        raise ValueError("the nonce must be 16 to 64 letters, digits, '_' or '-'")
    return value


class EnrollAnswer(BaseModel):
    """The master's answer: enrolled (with the name and key id to sign with), pending or
    refused, and why."""

    status: Literal["enrolled", "pending", "refused"]
    name: str = ""
    key_id: str = ""
    cert: str = Field(default="", description="the worker certificate (PEM), when a CSR came")
    reason: str


class DueBody(BaseModel):
    """A node asks whether its keys are due for rotation, proving it holds its current key
    (no join token needed: the proof is the node's own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mac: str = Field(description="the board's MAC on the cluster interface")
    key_id: str = Field(max_length=32, description="the key id of its current telemetry key")
    nonce: str = Field(description="fresh for every check: 16 to 64 letters, digits, _ or -")
    ts: int = Field(ge=0, le=1 << 40, description="the board's clock (Unix seconds) when it asked")
    proof: str = Field(max_length=64, description="due_proof() made with its current key")

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return normal_mac(value)

    @field_validator("nonce")
    @classmethod
    def _nonce(cls, value: str) -> str:
        return _checked_nonce(value)


class DueAnswer(BaseModel):
    """Whether the node must rotate its keys now, and why; PROOF (due_answer_proof() with
    the node's key) shows the node the answer comes from a master that knows its key."""

    status: Literal["due", "not_due", "refused"]
    reason: str
    proof: str = ""


class NodeTrust(BaseModel):
    """An enrolled node, as `bramble nodes pending` shows it (never its key)."""

    name: str
    mac: str
    key_id: str
    address: str
    enrolled: float
    revoked: float | None
    cert: bool
    due: str = Field(default="", description="why its keys are due for rotation, or ''")


class PendingView(BaseModel):
    """A request waiting for approval."""

    mac: str
    name: str
    address: str
    reason: str
    asked: float


def rotation_proof(current: bytes, mac: str, new_key_hex: str, nonce: str) -> str:
    """What a board sends to rotate its key: HMAC-SHA256 with its CURRENT key over its MAC,
    the new key and the request's nonce, hex."""
    import hmac

    message = f"bramble-rotate:{mac}:{new_key_hex}:{nonce}".encode()
    return hmac.new(current, message, hashlib.sha256).hexdigest()


DUE_WINDOW = 300.0
"""Seconds a due check's clock may be off the master's (its nonce is remembered longer)."""


def due_proof(key: bytes, mac: str, key_id: str, nonce: str, ts: int) -> str:
    """What a board sends to ask whether its keys are due: HMAC-SHA256 with its current KEY
    over its MAC, key id, the check's nonce and time, hex."""
    import hmac

    message = f"bramble-due:{mac}:{key_id}:{nonce}:{ts}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def due_answer_proof(key: bytes, mac: str, nonce: str, status: str) -> str:
    """The master's proof on its answer STATUS to the check NONCE of MAC: HMAC-SHA256 with
    the node's KEY, hex (only the master and the node hold it)."""
    import hmac

    message = f"bramble-due-answer:{mac}:{nonce}:{status}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def key_id_of(key: bytes) -> str:
    """The key id of a node's telemetry KEY: named by its hash, so both ends agree on it."""
    return "n-" + hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the collector verifies with: keys by key id (a rotated node's old one too,
    during the overlap), the node each node key is bound to, the key ids revoked, and
    whether the shared key still works."""

    keys: dict[str, bytes]
    owners: dict[str, str]
    revoked: frozenset[str]
    shared: bool
    expires: float | None = None
    """When the first rotated-out key stops being good (read the credentials again then)."""


@dataclass
class Enrollment:
    """Enrollment for the cluster of SPEC: JOIN_TOKENS accepted, STORE (open), LEASES (a
    function of the time giving MAC to leased address), CA (to sign worker certificates)."""

    spec: Spec
    join_tokens: list[JoinToken]
    store: TrustStore
    leases: Callable[[float], Mapping[str, str]]
    ca: Ca | None = None
    clock: Callable[[], float] = time.time
    spec_macs: Callable[[], Mapping[str, str]] | None = None
    """MAC to node name of the spec now (default: SPEC's nodes, as loaded)."""
    gate: RateLimit = field(init=False)
    nonces: Nonces = field(default_factory=Nonces)
    limited: int = 0
    """Requests refused by the rate limit so far."""
    checks_refused: int = 0
    """Due checks refused so far (a wrong or replayed proof, an unknown node, a bad clock)."""
    overlap: float = 0.0
    """Seconds a rotated-out key stays good beside the new one (default: ten telemetry
    intervals, at least 30 s), so no heartbeat is lost while the agent switches keys."""

    def __post_init__(self) -> None:
        self.gate = RateLimit(self.spec.enroll.per_minute)
        if not self.overlap:
            self.overlap = max(30.0, 10 * self.spec.telemetry.interval)

    def enroll(
        self, body: EnrollBody, token: str, address: str
    ) -> tuple[EnrollAnswer, Change | None]:
        """Decide BODY, sent with TOKEN from ADDRESS; record it; the answer and the change
        to tell (None for a rate-limited request: a flood is counted, not shown)."""
        now = self.clock()
        key = bytes.fromhex(body.key)
        key_id = key_id_of(key)
        digest = hashlib.sha256(key).hexdigest()
        request = Request(body.mac, address, key_id, digest, token, body.nonce)
        limited = not self.gate.allow(address, now)
        checked = check_token(token, self.join_tokens, now)
        replayed = not limited and checked == "ok" and self.nonces.seen(body.nonce, now)
        had = self.store.node(body.mac)
        known = {}
        proved = False
        if had is not None:
            digest_had = hashlib.sha256(had.key).hexdigest()
            known[had.mac] = Known(had.name, digest_had, had.revoked is not None)
            if body.proof and had.revoked is None:
                import hmac

                expected = rotation_proof(had.key, body.mac, body.key, body.nonce)
                proved = hmac.compare_digest(expected, body.proof)
        spec_macs = self._spec_macs()
        leases = self.leases(now) if checked == "ok" and not limited else {}
        decision = decide(
            request,
            policy=self.spec.enroll.policy,
            spec_macs=spec_macs,
            leases=leases,
            known=known,
            token=checked,
            limited=limited,
            replayed=replayed,
            proved=proved,
        )
        if decision.outcome == "pending" and self.store.setting(REFUSED + body.mac) == key_id:
            decision = Decision("refused", "", "refused by the admin (a new key may ask again)")
        who = decision.name or body.mac
        if decision.outcome == "refused":
            answer = EnrollAnswer(status="refused", reason=decision.reason)
            if limited:
                self.limited += 1
                return answer, None
            log.warning("enrollment of %s from %s refused: %s", body.mac, address, decision.reason)
            message = f"{body.mac} from {address} refused: {decision.reason}"
            return answer, self._change(now, who, "refused", message)
        if decision.outcome == "pending":
            self.store.wait(
                PendingRequest(
                    body.mac, decision.name, key_id, key, body.csr, address, decision.reason, now
                )
            )
            log.info("enrollment of %s from %s waits: %s", body.mac, address, decision.reason)
            answer = EnrollAnswer(status="pending", name=decision.name, reason=decision.reason)
            message = f"{body.mac} from {address} waits for approval: {decision.reason}"
            return answer, self._change(now, who, "pending", message)
        cert = self._sign(body.csr, decision.name, now)
        self.store.enroll(
            NodeCredentials(body.mac, decision.name, key_id, key, cert, address, now),
            take_name=True,
            overlap=self.overlap if proved else 0.0,  # only a proven rotation keeps the old
        )
        log.info("enrolled %s (%s from %s): %s", decision.name, body.mac, address, decision.reason)
        answer = EnrollAnswer(
            status="enrolled", name=decision.name, key_id=key_id, cert=cert, reason=decision.reason
        )
        message = f"{decision.name} enrolled ({body.mac} from {address})"
        return answer, self._change(now, who, "enrolled", message)

    def check_due(self, body: DueBody, address: str) -> DueAnswer:
        """Whether the node of BODY, asking from ADDRESS, must rotate its keys now: answered
        only to a proof made with its current key, fresh (its nonce unseen, its time within
        DUE_WINDOW of the master's); anything else is refused, counted and logged."""
        now = self.clock()
        if not self.gate.allow(address, now):
            self.limited += 1
            return DueAnswer(status="refused", reason=f"rate limited: too many from {address}")
        node = self.store.node(body.mac)
        reason = ""
        if node is None:
            reason = f"{body.mac} is not enrolled"
        elif node.revoked is not None:
            reason = f"{body.mac} is revoked"
        elif body.key_id != node.key_id:
            reason = f"{body.key_id} is not the current key of {body.mac}"
        else:
            import hmac

            expected = due_proof(node.key, body.mac, body.key_id, body.nonce, body.ts)
            if not hmac.compare_digest(expected, body.proof):
                reason = "wrong proof (not made with the node's current key)"
            elif abs(now - body.ts) > DUE_WINDOW:
                reason = f"the board's clock is {body.ts - now:+.0f} s off the master's"
            elif self.nonces.seen(body.nonce, now):
                reason = "replayed check (nonce seen before)"
        if node is None or reason:
            self.checks_refused += 1
            log.warning("rotation check of %s from %s refused: %s", body.mac, address, reason)
            return DueAnswer(status="refused", reason=reason)
        why = rotation_due(
            node.enrolled,
            now=now,
            rotate_days=self.spec.enroll.rotate_days,
            marked=self.store.rotation_marked(node.mac),
        )
        status: Literal["due", "not_due"] = "due" if why else "not_due"
        if why:
            log.info("%s (%s) is due to rotate its keys: %s", node.name, address, why)
        return DueAnswer(
            status=status,
            reason=why or "not due",
            proof=due_answer_proof(node.key, node.mac, body.nonce, status),
        )

    def mark_rotation(self, names: list[str] | None) -> list[str]:
        """Mark the enrolled nodes NAMES (None: every one) due to rotate their keys now: each
        rotates at its next check. The names marked; BrambleError for an unknown name."""
        marked = self.store.mark_rotation(names, self.clock())
        log.warning("keys due for rotation now: %s", ", ".join(marked) or "no node")
        return marked

    def _spec_macs(self) -> Mapping[str, str]:
        if self.spec_macs is not None:
            return self.spec_macs()
        return {n.mac: n.name for n in self.spec.nodes}

    def _sign(self, csr: str, name: str, now: float) -> str:
        if not csr or self.ca is None:
            return ""
        hosts = [name, self.spec.fqdn(name)]
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC)
        try:
            return sign_worker(csr, name, hosts, self.ca, stamp)
        except CsrError as exc:
            log.warning("no worker certificate for %s: %s", name, exc)
            return ""

    @staticmethod
    def _change(now: float, node: str, kind: ChangeKind, message: str) -> Change:
        return Change(ts=now, node=node, kind=kind, message=message)

    def approve(self, who: str, name: str | None = None) -> tuple[NodeTrust, Change]:
        """Enroll the waiting request of WHO (a MAC, or the name it waits under) as NAME (by
        default the spec's name for its MAC); BrambleError if none waits."""
        now = self.clock()
        request = self._waiting(who)
        if request is None:
            raise BrambleError(f"no request from {who!r} waits (see `bramble nodes pending`)")
        spec_name = self._spec_macs().get(request.mac, "")
        final = name or spec_name or request.name
        if not final:
            raise BrambleError(f"{request.mac} is not in the spec: give it a name (--name)")
        if not _LABEL.match(final):
            raise BrambleError(f"{final!r} is not a host name: letters, digits and '-'")
        cert = self._sign(request.csr, final, now)
        node = NodeCredentials(
            request.mac, final, request.key_id, request.key, cert, request.address, now
        )
        self.store.enroll(node, take_name=False)
        log.info("approved %s as %s", request.mac, final)
        change = self._change(now, final, "enrolled", f"{final} approved ({request.mac})")
        return _view(node), change

    def refuse(self, who: str) -> tuple[PendingView, Change]:
        """Refuse the waiting request of WHO (a MAC, or the name it waits under): it goes, and
        its key asking again is refused; BrambleError if none waits."""
        now = self.clock()
        found = self._waiting(who)
        request = self.store.refuse(found.mac) if found is not None else None
        if request is None:
            raise BrambleError(f"no request from {who!r} waits (see `bramble nodes pending`)")
        log.warning("refused %s (from %s, key %s)", request.mac, request.address, request.key_id)
        message = f"{request.mac} from {request.address} refused by the admin"
        change = self._change(now, request.name or request.mac, "refused", message)
        return _pending_view(request), change

    def _waiting(self, who: str) -> PendingRequest | None:
        """The request waiting from WHO (a MAC, or the name it waits under), if any."""
        waiting = self.store.pending()
        try:
            mac = normal_mac(who)
            found = [p for p in waiting if p.mac == mac]
        except ValueError:
            found = [p for p in waiting if p.name == who]
        return found[-1] if found else None

    def revoke(self, name: str) -> tuple[NodeTrust, Change]:
        """End the credentials of the node NAME at once."""
        now = self.clock()
        node = self.store.revoke(name, now)
        log.warning(
            "revoked %s (%s): its key %s is refused from now on", name, node.mac, node.key_id
        )
        return _view(node), self._change(now, name, "revoked", f"{name} revoked ({node.mac})")

    def retire_shared_key(self) -> None:
        """Stop accepting the cluster's shared telemetry key (every node has its own)."""
        self.store.set_setting(SHARED_KEY, "retired")
        log.warning("the shared telemetry key is retired: only enrolled nodes' keys verify")

    def nodes(self) -> list[NodeTrust]:
        """Every enrolled node, revoked ones too, and why each is due to rotate its keys."""
        now = self.clock()
        out = []
        for node in self.store.nodes():
            view = _view(node)
            if node.revoked is None:
                why = rotation_due(
                    node.enrolled,
                    now=now,
                    rotate_days=self.spec.enroll.rotate_days,
                    marked=self.store.rotation_marked(node.mac),
                )
                view = view.model_copy(update={"due": why})
            out.append(view)
        return out

    def pending(self) -> list[PendingView]:
        """Every request waiting for approval."""
        return [_pending_view(p) for p in self.store.pending()]

    def write_revocations(self, path: Path) -> bool:
        """Write the revoked worker certificates' serials to PATH (mode 0644: they are no
        secret) for the scheduler, atomically, if they changed; whether they did."""
        text = format_revocations(self.store.revoked_certificates(self.clock()))
        try:
            if path.read_text() == text:
                return False
        except (OSError, UnicodeDecodeError):
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(path.name + ".new")
        fresh.write_text(text)
        fresh.chmod(0o644)
        os.replace(fresh, path)
        return True

    def credentials(self) -> Credentials:
        """The node keys the collector verifies with, as the store has them now (revoked
        ones too, so their datagrams are told from forgeries)."""
        keys: dict[str, bytes] = {}
        owners: dict[str, str] = {}
        revoked: set[str] = set()
        now = self.clock()
        expires: float | None = None
        for node in self.store.nodes():
            keys[node.key_id] = node.key
            if node.revoked is not None:
                revoked.add(node.key_id)
                continue
            owners[node.key_id] = node.name
            if node.old_key_id and node.old_until > now:  # rotated: both keys, for a while
                keys[node.old_key_id] = node.old_key
                owners[node.old_key_id] = node.name
                expires = min(expires or node.old_until, node.old_until)
        shared = self.store.setting(SHARED_KEY, "active") == "active"
        return Credentials(keys, owners, frozenset(revoked), shared, expires)


def _pending_view(p: PendingRequest) -> PendingView:
    return PendingView(mac=p.mac, name=p.name, address=p.address, reason=p.reason, asked=p.asked)


def _view(node: NodeCredentials) -> NodeTrust:
    return NodeTrust(
        name=node.name,
        mac=node.mac,
        key_id=node.key_id,
        address=node.address,
        enrolled=node.enrolled,
        revoked=node.revoked,
        cert=bool(node.cert),
    )
