"""The scheduler's gate, with real certificates: a node's worker certificate (its own, signed
at enrollment, and the shared one of older clusters) cannot connect as a client; the master's
client certificate can, and a worker with its own certificate runs the master's tasks."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
from bramble_testing import SERVER_CODE, LocalCluster, stop

from bramble.jobs.dask import security_for
from bramble.jobs.gate import worker_certificate
from bramble.jobs.tls import TlsPaths
from bramble.trust.certs import Ca, make_csr, sign_worker


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
