"""Enrollment on the master with a real credentials file: decisions recorded once, approval,
revocation, worker certificates signed by the cluster CA; time and leases injected."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bramble.errors import BrambleError
from bramble.jobs.tls import create_cluster_tls
from bramble.spec import parse_spec
from bramble.trust.certs import Ca, common_name, make_csr
from bramble.trust.policy import JoinToken
from bramble.trust.service import (
    DueAnswer,
    DueBody,
    EnrollBody,
    Enrollment,
    due_proof,
    key_id_of,
)
from bramble.trust.store import TrustStore

MAC = "b8:27:eb:00:00:01"
SPEC = parse_spec(
    '[[nodes]]\nname = "node-1"\nmac = "b8:27:eb:00:00:01"\n'
    '[[nodes]]\nname = "node-2"\nmac = "b8:27:eb:00:00:02"\n'
)
TOKEN = "join-token-0123456789"
LEASES = {MAC: "10.42.0.11", "b8:27:eb:00:00:02": "10.42.0.12"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Enrollment]:
    store = TrustStore(tmp_path / "trust.db").open()
    clock = [1000.0]
    enrollment = Enrollment(
        SPEC, [JoinToken(TOKEN)], store, leases=lambda now: LEASES, clock=lambda: clock[0]
    )
    yield enrollment
    store.close()


def body(mac: str = MAC, key: bytes = b"k" * 32, csr: str = "") -> EnrollBody:
    return EnrollBody(mac=mac, key=key.hex(), nonce=secrets.token_urlsafe(16), csr=csr)


def test_auto_enrolls_once_however_often_the_board_asks(service: Enrollment) -> None:
    for _ in range(3):  # the answer lost, the master restarted: the board asks again
        answer, change = service.enroll(body(), TOKEN, "10.42.0.11")
        assert answer.status == "enrolled" and answer.name == "node-1"
        assert answer.key_id == key_id_of(b"k" * 32)
        assert change is not None and change.kind == "enrolled"
    assert [n.name for n in service.nodes()] == ["node-1"]
    creds = service.credentials()
    assert creds.keys == {answer.key_id: b"k" * 32} and creds.owners == {answer.key_id: "node-1"}
    assert creds.shared


def test_a_stranger_waits_until_approved(service: Enrollment) -> None:
    stranger = "02:00:00:00:00:09"
    answer, change = service.enroll(body(stranger), TOKEN, "10.42.0.150")
    assert answer.status == "pending" and change is not None and change.kind == "pending"
    assert [p.mac for p in service.pending()] == [stranger]
    assert service.credentials().keys == {}
    with pytest.raises(BrambleError, match="give it a name"):
        service.approve(stranger)
    view, change = service.approve(stranger, "node-9")
    assert view.name == "node-9" and change.kind == "enrolled"
    assert service.pending() == []
    again, _ = service.enroll(body(stranger), TOKEN, "10.42.0.150")
    assert (again.status, again.name) == ("enrolled", "node-9")


def test_wrong_address_waits_and_bad_token_is_refused(service: Enrollment) -> None:
    assert service.enroll(body(), TOKEN, "10.42.0.99")[0].status == "pending"
    answer, change = service.enroll(body(), "not-the-token", "10.42.0.11")
    assert answer.status == "refused" and change is not None and change.kind == "refused"
    assert service.nodes() == []


def test_revoked_is_refused_by_the_collector_and_waits_to_come_back(service: Enrollment) -> None:
    answer, _ = service.enroll(body(), TOKEN, "10.42.0.11")
    view, change = service.revoke("node-1")
    assert view.revoked is not None and change.kind == "revoked"
    creds = service.credentials()
    assert creds.revoked == {answer.key_id} and creds.owners == {}
    assert service.enroll(body(), TOKEN, "10.42.0.11")[0].status == "pending"
    with pytest.raises(BrambleError, match="revoked already"):
        service.revoke("node-1")
    service.approve("node-1")
    assert service.credentials().owners == {answer.key_id: "node-1"}


def test_rate_limited_requests_are_counted_not_shown(service: Enrollment) -> None:
    answers = [service.enroll(body(), "x", "10.0.0.1") for _ in range(35)]
    assert sum(1 for a, c in answers if c is None) == 5 and service.limited == 5
    assert answers[-1][0].reason.startswith("rate limited")


def test_worker_certificate_signed_by_the_ca_with_the_node_name(
    service: Enrollment, tmp_path: Path
) -> None:
    from cryptography import x509

    tls = create_cluster_tls(tmp_path / "tls")
    service.ca = Ca(tls.ca_cert.read_text(), tls.ca_key.read_text())
    _key, csr = make_csr("whoever")
    answer, _ = service.enroll(body(csr=csr), TOKEN, "10.42.0.11")
    assert common_name(answer.cert) == "node-1"
    cert = x509.load_pem_x509_certificate(answer.cert.encode())
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    bad, _ = service.enroll(body(key=b"j" * 32, csr="junk"), TOKEN, "10.42.0.11")
    assert bad.status == "enrolled" and bad.cert == ""


def test_a_mac_added_to_the_spec_file_enrolls_without_a_restart(service: Enrollment) -> None:
    new = "b8:27:eb:00:00:07"
    assert service.enroll(body(new), TOKEN, "10.42.0.17")[0].status == "pending"
    service.spec_macs = lambda: {new: "node-7"}
    leases = {new: "10.42.0.17"}
    service.leases = lambda now: leases
    answer, _ = service.enroll(body(new), TOKEN, "10.42.0.17")
    assert (answer.status, answer.name) == ("enrolled", "node-7")


def test_rotation_keeps_the_old_key_good_for_the_overlap(
    service: Enrollment, tmp_path: Path
) -> None:
    from bramble.trust.service import rotation_proof

    old, new = b"o" * 32, b"n" * 32
    first, _ = service.enroll(body(key=old), TOKEN, "10.42.0.11")
    nonce = secrets.token_urlsafe(16)
    bad = EnrollBody(mac=MAC, key=new.hex(), nonce=nonce, proof="00" * 32)
    assert service.enroll(bad, TOKEN, "10.42.0.99")[0].status == "pending"
    nonce = secrets.token_urlsafe(16)
    proof = rotation_proof(old, MAC, new.hex(), nonce)
    rotated, _ = service.enroll(
        EnrollBody(mac=MAC, key=new.hex(), nonce=nonce, proof=proof), TOKEN, "10.42.0.99"
    )
    assert (rotated.status, rotated.name) == ("enrolled", "node-1")
    creds = service.credentials()
    assert creds.owners == {first.key_id: "node-1", rotated.key_id: "node-1"}
    assert creds.expires == pytest.approx(1000.0 + service.overlap)
    service.clock = lambda: 1000.0 + service.overlap + 1
    assert service.credentials().owners == {rotated.key_id: "node-1"}


def test_revoked_certificates_stay_refused_until_they_expire(
    service: Enrollment, tmp_path: Path
) -> None:
    from cryptography import x509

    from bramble.jobs.gate import parse_revocations

    tls = create_cluster_tls(tmp_path / "tls")
    service.ca = Ca(tls.ca_cert.read_text(), tls.ca_key.read_text())
    first = service.enroll(body(csr=make_csr("node-1")[1]), TOKEN, "10.42.0.11")[0].cert
    serial = x509.load_pem_x509_certificate(first.encode()).serial_number
    path = tmp_path / "state" / "revoked-certs.txt"
    assert service.write_revocations(path) and parse_revocations(path.read_text()) == set()
    service.revoke("node-1")
    assert service.write_revocations(path) and parse_revocations(path.read_text()) == {serial}
    assert path.stat().st_mode & 0o777 == 0o644  # no secret: the scheduler's user reads it
    # the board comes back, approved with a new certificate: the old one stays refused
    service.enroll(body(csr=make_csr("node-1")[1]), TOKEN, "10.42.0.11")
    service.approve("node-1")
    assert not service.write_revocations(path)
    assert service.store.revoked_certificates(1000.0) == [(serial, "node-1")]
    # the spec gives node-1's name to another board: the certificate naming node-1 goes too
    second = service.store.node(MAC)
    assert second is not None
    service.spec_macs = lambda: {"b8:27:eb:00:00:07": "node-1"}
    service.leases = lambda now: {"b8:27:eb:00:00:07": "10.42.0.17"}
    moved = body("b8:27:eb:00:00:07", csr=make_csr("node-1")[1])
    assert service.enroll(moved, TOKEN, "10.42.0.17")[0].status == "enrolled"
    serials = {s for s, _ in service.store.revoked_certificates(1000.0)}
    assert serials == {serial, x509.load_pem_x509_certificate(second.cert.encode()).serial_number}
    expired = x509.load_pem_x509_certificate(first.encode()).not_valid_after_utc.timestamp()
    assert service.store.revoked_certificates(expired + 1) == []  # expired: forgotten


def test_rotation_renews_the_worker_certificate_and_ends_the_old_with_the_overlap(
    service: Enrollment, tmp_path: Path
) -> None:
    """A board rotating its keys gets a new worker certificate; the old one is refused by
    the scheduler once the overlap ends (a stolen card's certificate stops working), not
    before (the running worker restarts on the new one). A rotation of the telemetry key
    alone keeps the certificate, so revoking the node later still revokes it."""
    from cryptography import x509

    from bramble.trust.service import rotation_proof

    tls = create_cluster_tls(tmp_path / "tls")
    service.ca = Ca(tls.ca_cert.read_text(), tls.ca_key.read_text())
    old, new, newest = b"o" * 32, b"n" * 32, b"m" * 32

    def serial(pem: str) -> int:
        return x509.load_pem_x509_certificate(pem.encode()).serial_number

    def rotate(current: bytes, key: bytes, csr: str = "") -> str:
        nonce = secrets.token_urlsafe(16)
        proof = rotation_proof(current, MAC, key.hex(), nonce)
        asked = EnrollBody(mac=MAC, key=key.hex(), nonce=nonce, proof=proof, csr=csr)
        answer, _ = service.enroll(asked, TOKEN, "10.42.0.11")
        assert answer.status == "enrolled"
        return answer.cert

    first = service.enroll(body(key=old, csr=make_csr("w")[1]), TOKEN, "10.42.0.11")[0].cert
    second = rotate(old, new, make_csr("w")[1])
    assert second and common_name(second) == "node-1" and serial(second) != serial(first)
    assert service.store.revoked_certificates(1000.0) == []  # the overlap: both good
    ends = 1000.0 + service.overlap
    assert service.store.revoked_certificates(ends) == [(serial(first), "node-1")]
    assert service.credentials().expires == pytest.approx(ends)  # the master looks again then

    assert rotate(new, newest) == ""  # the telemetry key alone
    kept = service.store.node(MAC)
    assert kept is not None and kept.cert == second
    service.clock = lambda: ends + 1
    service.revoke("node-1")
    assert {s for s, _ in service.store.revoked_certificates(ends + 1)} == {
        serial(first),
        serial(second),
    }


def test_a_refused_stranger_stays_refused_with_that_key(service: Enrollment) -> None:
    """The admin refuses a waiting board: its request goes, and the same key asking again is
    refused (not waiting again); a board with a new key (flashed again) waits anew."""
    stranger = "02:00:00:00:00:09"
    service.enroll(body(stranger), TOKEN, "10.42.0.150")
    view, change = service.refuse(stranger)
    assert view.mac == stranger and change.kind == "refused"
    assert service.pending() == []
    again, told = service.enroll(body(stranger), TOKEN, "10.42.0.150")
    assert again.status == "refused" and "refused by the admin" in again.reason
    assert told is not None and told.kind == "refused"
    assert service.pending() == [] and service.nodes() == []
    with pytest.raises(BrambleError, match="no request"):
        service.refuse(stranger)
    fresh, _ = service.enroll(body(stranger, key=b"n" * 32), TOKEN, "10.42.0.150")
    assert fresh.status == "pending"
    # a spec board asking from its lease is not held back by an old refusal of its MAC
    service.enroll(body("b8:27:eb:00:00:02"), TOKEN, "10.42.0.99")  # wrong address: waits
    service.refuse("node-2")
    answer, _ = service.enroll(body("b8:27:eb:00:00:02"), TOKEN, "10.42.0.12")
    assert answer.status == "enrolled"


def _check(
    service: Enrollment, key: bytes, *, key_id: str = "", nonce: str = "", ts: int = 1000
) -> DueAnswer:
    """A due check as the board sends it, with its KEY, from its address."""
    nonce = nonce or secrets.token_urlsafe(16)
    key_id = key_id or key_id_of(key)
    proof = due_proof(key, MAC, key_id, nonce, ts)
    asked = DueBody(mac=MAC, key_id=key_id, nonce=nonce, ts=ts, proof=proof)
    return service.check_due(asked, "10.42.0.11")


def test_a_node_is_due_by_age_or_when_the_admin_says(service: Enrollment) -> None:
    from bramble.trust.service import rotation_proof

    old, new = b"o" * 32, b"n" * 32
    service.enroll(body(key=old), TOKEN, "10.42.0.11")
    answer = _check(service, old)
    assert (answer.status, answer.reason) == ("not_due", "not due")
    # the answer is proven with the node's key: nothing else could make it rotate
    assert answer.proof and service.nodes()[0].due == ""
    # thirty days on (enroll.rotate_days), due
    later = 1000.0 + 30 * 86400
    service.clock = lambda: later
    answer = _check(service, old, ts=int(later))
    assert answer.status == "due" and "days old" in answer.reason
    # it rotates (a new key, proven with the old one): not due any more
    nonce = secrets.token_urlsafe(16)
    proof = rotation_proof(old, MAC, new.hex(), nonce)
    rotated = EnrollBody(mac=MAC, key=new.hex(), nonce=nonce, proof=proof)
    assert service.enroll(rotated, TOKEN, "10.42.0.11")[0].status == "enrolled"
    assert _check(service, new, ts=int(later)).status == "not_due"
    # `bramble keys rotate --nodes`: due at once, until it rotates again
    service.clock = lambda: later + 60
    assert service.mark_rotation(None) == ["node-1"]
    assert "admin" in service.nodes()[0].due
    assert _check(service, new, ts=int(later) + 60).status == "due"
    with pytest.raises(BrambleError, match="node-9"):
        service.mark_rotation(["node-9"])


def test_a_due_check_without_a_fresh_proof_of_the_current_key_is_refused(
    service: Enrollment,
) -> None:
    """Only the node, with its current key, learns whether it is due; a replayed, stale,
    forged or unknown check is refused and counted."""
    key = b"k" * 32
    service.enroll(body(key=key), TOKEN, "10.42.0.11")
    service.clock = lambda: 1001.0
    service.mark_rotation(["node-1"])  # due: a refused check must not tell it
    nonce = secrets.token_urlsafe(16)
    assert _check(service, key, nonce=nonce).status == "due"
    replayed = _check(service, key, nonce=nonce)
    assert (replayed.status, replayed.proof) == ("refused", "")
    assert "replayed" in replayed.reason
    wrong = _check(service, b"x" * 32, key_id=key_id_of(key))
    assert wrong.status == "refused" and "wrong proof" in wrong.reason
    assert "not the current key" in _check(service, b"x" * 32).reason
    service.clock = lambda: 1000.0 + 3600  # a recorded check, replayed an hour on
    stale = _check(service, key, ts=1000)
    assert stale.status == "refused" and "clock" in stale.reason
    service.revoke("node-1")
    assert "revoked" in _check(service, key).reason
    assert service.checks_refused == 5
    stranger = DueBody(
        mac="02:00:00:00:00:09", key_id="n-0", nonce="n" * 16, ts=1000, proof="00" * 32
    )
    assert service.check_due(stranger, "10.42.0.150").status == "refused"
