"""Mutual TLS: only holders of a certificate from the cluster's CA reach the scheduler."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from bramble_testing import LocalCluster
from cryptography import x509

from bramble.jobs.dask import SchedulerUnreachableError, client_for
from bramble.jobs.tls import ROLES, TlsError, TlsPaths, create_cluster_tls


def test_create_writes_ca_and_role_certs_signed_by_it(tmp_path: Path) -> None:
    paths = create_cluster_tls(tmp_path / "tls", hosts=["10.42.0.1", "master.cluster"])
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for role in ROLES:
        cert = x509.load_pem_x509_certificate(paths.cert(role).read_bytes())
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        assert stat.S_IMODE(paths.key(role).stat().st_mode) == 0o600
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "master.cluster" in sans.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(paths.ca_key.stat().st_mode) == 0o600


def test_rerun_keeps_existing_material_unless_forced(tmp_path: Path) -> None:
    paths = create_cluster_tls(tmp_path / "tls")
    before = paths.ca_cert.read_bytes()
    create_cluster_tls(tmp_path / "tls")
    assert paths.ca_cert.read_bytes() == before
    create_cluster_tls(tmp_path / "tls", force=True)
    assert paths.ca_cert.read_bytes() != before


def test_missing_material_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="bramble init"):
        TlsPaths(tmp_path).check("client")


@pytest.mark.slow
def test_client_with_cluster_cert_connects(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        assert c.submit(pow, 2, 10).result() == 1024


@pytest.mark.slow
def test_client_with_foreign_ca_is_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    foreign = create_cluster_tls(tmp_path / "foreign", cluster="other")
    config = cluster.config(tmp_path)
    stranger = dataclasses.replace(config, tls=foreign)
    with pytest.raises(SchedulerUnreachableError):
        client_for(stranger, timeout=3)


@pytest.mark.slow
def test_client_without_tls_is_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    config = cluster.config(tmp_path)
    plain = dataclasses.replace(
        config, tls=None, scheduler=cluster.scheduler.replace("tls://", "tcp://")
    )
    with pytest.raises(SchedulerUnreachableError):
        client_for(plain, timeout=3)
