"""The scheduler's gate, with real certificates: a node's worker certificate (its own, signed
at enrollment, and the shared one of older clusters) cannot connect as a client; the master's
client certificate can, and a worker with its own certificate runs the master's tasks; a
revoked node's certificate cannot connect at all, from the revocation on."""

from __future__ import annotations

import asyncio
import datetime
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bramble_testing import SERVER_CODE, LocalCluster, stop, wait_for

from bramble.jobs.dask import security_for
from bramble.jobs.gate import (
    REVOKED_FILE,
    Revocations,
    certificate_serial,
    parse_revocations,
    worker_certificate,
)
from bramble.jobs.tls import TlsPaths
from bramble.spec import parse_spec
from bramble.trust.certs import Ca, make_csr, sign_worker
from bramble.trust.policy import JoinToken
from bramble.trust.service import EnrollBody, Enrollment
from bramble.trust.store import TrustStore


def _own_worker_tls(cluster: LocalCluster, directory: Path, name: str) -> TlsPaths:
    """A node's TLS directory as enrollment leaves it: the CA, its own key and certificate."""
    directory.mkdir()
    key, csr = make_csr(name)
    ca = Ca(cluster.tls.ca_cert.read_text(), cluster.tls.ca_key.read_text())
    now = datetime.datetime.now(datetime.UTC)
    (directory / "ca.pem").write_text(ca.cert)
    (directory / "worker.pem").write_text(sign_worker(csr, name, [name], ca, now))
    (directory / "worker-key.pem").write_text(key)
    return TlsPaths(directory)


def test_worker_certificates_cannot_be_clients(cluster: LocalCluster, tmp_path: Path) -> None:
    from distributed import Client

    own = _own_worker_tls(cluster, tmp_path / "node-7", "node-7")
    for tls in (cluster.tls, own):  # the shared worker certificate, and a node's own
        with pytest.raises(Exception, match="worker's certificate"):
            Client(cluster.scheduler, security=security_for(tls, "worker"), timeout=10)
    # a worker with its own certificate joins and runs what the master's client submits
    argv = [sys.executable, "-c", SERVER_CODE, "worker", cluster.scheduler, str(own.directory)]
    argv += ["node-7", cluster.dashboard_url]
    with open(tmp_path / "node-7.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        with cluster.client() as client:
            client.wait_for_workers(3, timeout=30)
            workers = [w for w, info in client.scheduler_info()["workers"].items()
                       if info["name"] == "node-7"]  # fmt: skip
            assert workers
            assert client.submit(sum, [1, 2, 3], workers=workers, pure=False).result(30) == 6
    finally:
        stop(proc)


def test_worker_certificate_is_told_by_its_subject() -> None:
    def cert(*pairs: tuple[str, str]) -> dict[str, object]:
        return {"subject": tuple((pair,) for pair in pairs)}

    assert worker_certificate(cert(("organizationalUnitName", "bramble worker")))
    assert worker_certificate(cert(("commonName", "bramble-worker")))
    assert not worker_certificate(cert(("commonName", "bramble-client")))
    assert not worker_certificate(None) and not worker_certificate({})


def _start_worker(cluster: LocalCluster, tls: TlsPaths, name: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", SERVER_CODE, "worker", cluster.scheduler, str(tls.directory)]
    argv += [name, cluster.dashboard_url]
    with open(tls.directory.parent / f"{name}.log", "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cluster.root)


def _workers(cluster: LocalCluster) -> set[str]:
    with cluster.client() as client:
        return {str(info["name"]) for info in client.scheduler_info()["workers"].values()}


async def _identity(cluster: LocalCluster, tls: TlsPaths) -> Any:
    """The scheduler's answer to `identity` on a new connection with TLS's worker certificate."""
    from distributed.comm import connect

    args = security_for(tls, "worker").get_connection_args("worker")
    comm = await connect(cluster.scheduler, timeout=10, **args)
    try:
        await comm.write({"op": "identity"})
        return await asyncio.wait_for(comm.read(), 10)
    finally:
        comm.abort()


def test_a_revoked_node_cannot_connect_again(cluster: LocalCluster, tmp_path: Path) -> None:
    """Two boards enroll (worker certificates signed by the master's enrollment); one is
    revoked while its worker runs: restarted, it cannot join again, the other one can. The
    scheduler, started before, reads the master's revocation at once."""
    from distributed.comm import CommClosedError

    spec = parse_spec(
        '[[nodes]]\nname = "node-8"\nmac = "b8:27:eb:00:00:08"\n'
        '[[nodes]]\nname = "node-9"\nmac = "b8:27:eb:00:00:09"\n'
    )
    ca = Ca(cluster.tls.ca_cert.read_text(), cluster.tls.ca_key.read_text())
    leases = {"b8:27:eb:00:00:08": "10.42.0.18", "b8:27:eb:00:00:09": "10.42.0.19"}
    store = TrustStore(tmp_path / "trust.db").open()
    service = Enrollment(spec, [JoinToken("join-token-0123456789")], store, lambda _: leases, ca)
    revoked = cluster.root / REVOKED_FILE  # where the scheduler (cwd: root) looks
    tls: dict[str, TlsPaths] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, mac in (("node-8", "b8:27:eb:00:00:08"), ("node-9", "b8:27:eb:00:00:09")):
            key, csr = make_csr(name)
            body = EnrollBody(
                mac=mac, key=secrets.token_hex(32), nonce=secrets.token_hex(8), csr=csr
            )
            answer, _ = service.enroll(body, "join-token-0123456789", leases[mac])
            assert answer.status == "enrolled" and answer.cert
            directory = tmp_path / name
            directory.mkdir()
            (directory / "ca.pem").write_text(ca.cert)
            (directory / "worker.pem").write_text(answer.cert)
            (directory / "worker-key.pem").write_text(key)
            tls[name] = TlsPaths(directory)
        procs += [_start_worker(cluster, tls[n], n) for n in ("node-8", "node-9")]
        wait_for(lambda: {"node-8", "node-9"} <= _workers(cluster), 30, "both workers joined")

        service.revoke("node-8")
        assert service.write_revocations(revoked)
        assert not service.write_revocations(revoked)  # unchanged: not written again
        with pytest.raises(CommClosedError):  # at once: no restart of the scheduler
            asyncio.run(_identity(cluster, tls["node-8"]))
        assert asyncio.run(_identity(cluster, tls["node-9"]))["type"] == "Scheduler"

        for proc in procs:  # both boards reboot (the master removed node-8's worker)
            stop(proc)
        wait_for(lambda: not {"node-8", "node-9"} & _workers(cluster), 30, "workers gone")
        procs = [_start_worker(cluster, tls[n], n) for n in ("node-8", "node-9")]
        wait_for(lambda: "node-9" in _workers(cluster), 30, "node-9 back")
        log = (cluster.root / "scheduler.log").read_text()
        wait_for(
            lambda: "the certificate of node-8" in (cluster.root / "scheduler.log").read_text(),
            10,
            "node-8's worker refused",
        )
        assert "node-8" not in _workers(cluster) and procs[0].poll() is None
        assert "the certificate of node-9" not in log
    finally:
        for proc in procs:
            stop(proc)
        revoked.unlink(missing_ok=True)
        store.close()


def test_revocations_are_read_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / REVOKED_FILE
    revocations = Revocations(path)
    assert revocations.serials() == frozenset()  # no file: nothing revoked
    path.write_text("# comment\nA1B2 node-1\nnot-hex\n\n")
    assert revocations.serials() == {0xA1B2}
    assert revocations.refused({"serialNumber": "A1B2"})
    assert not revocations.refused({"serialNumber": "A1B3"}) and not revocations.refused(None)
    path.write_text("A1B2 node-1\n0C node-2\n")
    assert revocations.serials() == {0xA1B2, 0x0C}
    path.unlink()
    assert revocations.serials() == frozenset()
    assert parse_revocations("ff x # y\n") == {255}
    assert certificate_serial({"serialNumber": "0A"}) == 10 and certificate_serial({}) is None
