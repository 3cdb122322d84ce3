"""The board's side: its own keys kept before it asks, asking until enrolled, enrolled once
however often the answer is lost, credentials private; the master's service in process."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bramble.jobs.tls import create_cluster_tls
from bramble.spec import parse_spec
from bramble.trust.certs import Ca, common_name
from bramble.trust.node import (
    CREDENTIALS,
    EnrollError,
    enroll,
    read_identity,
    rotate_if_due,
)
from bramble.trust.policy import JoinToken
from bramble.trust.service import DueBody, EnrollBody, Enrollment
from bramble.trust.store import TrustStore

MAC = "b8:27:eb:00:00:01"
TOKEN = "join-token-0123456789"
SPEC = parse_spec('[[nodes]]\nname = "node-1"\nmac = "b8:27:eb:00:00:01"\n')


@pytest.fixture
def board(tmp_path: Path) -> Path:
    directory = tmp_path / "etc-bramble"
    directory.mkdir()
    (directory / "join.toml").write_text(
        f'[join]\nmaster = "https://10.42.0.1:8081"\ntoken = "{TOKEN}"\n'
    )
    return directory


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Enrollment]:
    store = TrustStore(tmp_path / "trust.db").open()
    yield Enrollment(SPEC, [JoinToken(TOKEN)], store, leases=lambda now: {MAC: "10.42.0.11"})
    store.close()


class FakeMaster:
    """Posts to SERVICE from ADDRESS; the first LOSE answers are lost (the master crashed
    after deciding, or the network dropped the answer)."""

    def __init__(self, service: Enrollment, address: str = "10.42.0.11", lose: int = 0) -> None:
        self.service, self.address, self.lose = service, address, lose
        self.keys: list[str] = []

    def __call__(self, url: str, body: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
        if url == "https://10.42.0.1:8081/api/enroll/due":
            due = self.service.check_due(DueBody(**body), self.address)
            return (200 if due.status != "refused" else 403), due.model_dump()
        assert url == "https://10.42.0.1:8081/api/enroll"
        self.keys.append(body["key"])
        answer, _ = self.service.enroll(EnrollBody(**body), token, self.address)
        if self.lose:
            self.lose -= 1
            raise OSError("connection reset")
        code = {"enrolled": 200, "pending": 202, "refused": 403}[answer.status]
        return code, answer.model_dump()


def test_enrolls_once_though_answers_are_lost(board: Path, service: Enrollment) -> None:
    master = FakeMaster(service, lose=2)
    waits: list[float] = []
    identity = enroll(board, MAC, post=master, sleep=waits.append)
    assert identity.name == "node-1" and len(master.keys) == 3 and len(set(master.keys)) == 1
    assert len(service.nodes()) == 1 and waits[1] > waits[0] / 2
    path = board / CREDENTIALS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_identity(path) == identity and identity.key.hex() == master.keys[0]
    assert sorted(p.name for p in board.iterdir()) == ["join.toml", "node.toml"]
    # with credentials it asks nothing
    assert enroll(board, MAC, post=master, sleep=waits.append) == identity
    assert len(master.keys) == 3


def test_waits_while_pending_and_gives_up_on_a_bad_token(board: Path, service: Enrollment) -> None:
    stranger = FakeMaster(service, address="10.42.0.99")
    with pytest.raises(EnrollError, match="not enrolled after 3"):
        enroll(board, MAC, post=stranger, sleep=lambda _: None, attempts=3)
    assert len(set(stranger.keys)) == 1  # the same key every time, kept across runs
    service.approve(MAC)
    assert enroll(board, MAC, post=stranger, sleep=lambda _: None).name == "node-1"
    (board / "join.toml").write_text('[join]\nmaster = "https://10.42.0.1:8081"\ntoken = "bad"\n')
    (board / CREDENTIALS).unlink()
    with pytest.raises(EnrollError, match="join token"):
        enroll(board, MAC, post=stranger, sleep=lambda _: None)


def test_worker_key_made_on_the_board_and_certificate_kept(
    board: Path, service: Enrollment, tmp_path: Path
) -> None:
    cluster = create_cluster_tls(tmp_path / "master-tls")
    service.ca = Ca(cluster.ca_cert.read_text(), cluster.ca_key.read_text())
    tls = board / "tls"
    enroll(board, MAC, tls_dir=tls, post=FakeMaster(service), sleep=lambda _: None)
    assert common_name((tls / "worker.pem").read_text()) == "node-1"
    assert stat.S_IMODE((tls / "worker-key.pem").stat().st_mode) == 0o600
    assert sorted(p.name for p in tls.iterdir()) == ["worker-key.pem", "worker.pem"]
    assert "PRIVATE KEY" not in str(service.store.pending()) + str(service.nodes())


def test_rotate_asks_for_a_new_key_with_a_proof(board: Path, service: Enrollment) -> None:
    first = enroll(board, MAC, post=FakeMaster(service), sleep=lambda _: None)
    moved = FakeMaster(service, address="10.42.0.99")  # not its lease: the proof decides
    second = enroll(board, MAC, post=moved, sleep=lambda _: None, rotate=True)
    assert second.name == first.name and second.key != first.key
    assert read_identity(board / CREDENTIALS) == second
    assert len(service.credentials().owners) == 2  # both good during the overlap


def test_rotate_renews_the_worker_key_and_certificate_on_the_board(
    board: Path, service: Enrollment, tmp_path: Path
) -> None:
    cluster = create_cluster_tls(tmp_path / "master-tls")
    service.ca = Ca(cluster.ca_cert.read_text(), cluster.ca_key.read_text())
    tls = board / "tls"
    enroll(board, MAC, tls_dir=tls, post=FakeMaster(service), sleep=lambda _: None)
    key, cert = (tls / "worker-key.pem").read_text(), (tls / "worker.pem").read_text()
    enroll(board, MAC, tls_dir=tls, post=FakeMaster(service), sleep=lambda _: None, rotate=True)
    assert (tls / "worker-key.pem").read_text() != key  # made on the board again
    renewed = (tls / "worker.pem").read_text()
    assert renewed != cert and common_name(renewed) == "node-1"
    assert sorted(p.name for p in tls.iterdir()) == ["worker-key.pem", "worker.pem"]
    assert stat.S_IMODE((tls / "worker-key.pem").stat().st_mode) == 0o600


def test_rotates_only_when_the_master_says_so_and_proves_it(
    board: Path, service: Enrollment, tmp_path: Path
) -> None:
    """The hourly check: nothing while not due; when the admin marks the node, a new key
    and worker certificate, once; an answer not proven with the board's key (anyone but
    the master that enrolled it) changes nothing."""
    cluster = create_cluster_tls(tmp_path / "master-tls")
    service.ca = Ca(cluster.ca_cert.read_text(), cluster.ca_key.read_text())
    tls = board / "tls"
    master = FakeMaster(service)
    first = enroll(board, MAC, tls_dir=tls, post=master, sleep=lambda _: None)
    cert = (tls / "worker.pem").read_text()
    assert rotate_if_due(board, MAC, tls_dir=tls, post=master) == (None, "not due")

    def liar(url: str, body: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "due", "reason": "trust me", "proof": "00" * 32}

    with pytest.raises(EnrollError, match="not proven"):
        rotate_if_due(board, MAC, tls_dir=tls, post=liar)
    assert read_identity(board / CREDENTIALS) == first
    service.mark_rotation(["node-1"])
    rotated, why = rotate_if_due(board, MAC, tls_dir=tls, post=master, sleep=lambda _: None)
    assert rotated is not None and "admin" in why
    assert rotated.name == "node-1" and rotated.key != first.key
    assert read_identity(board / CREDENTIALS) == rotated
    assert (tls / "worker.pem").read_text() != cert
    assert rotate_if_due(board, MAC, tls_dir=tls, post=master) == (None, "not due")


def test_an_interrupted_rotation_is_finished_at_the_next_check(
    board: Path, service: Enrollment
) -> None:
    """The master enrolled the new key but the answer was lost: the board still holds its
    old key, which no longer proves a check; it finishes the rotation with the key it kept."""
    first = enroll(board, MAC, post=FakeMaster(service), sleep=lambda _: None)
    service.mark_rotation(["node-1"])
    with pytest.raises(EnrollError):
        rotate_if_due(board, MAC, post=FakeMaster(service, lose=1), attempts=1)
    assert read_identity(board / CREDENTIALS) == first
    rotated, why = rotate_if_due(board, MAC, post=FakeMaster(service), sleep=lambda _: None)
    assert rotated is not None and rotated.key != first.key and "interrupted" in why
    assert rotate_if_due(board, MAC, post=FakeMaster(service)) == (None, "not due")
