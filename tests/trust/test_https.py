"""The master's enrollment certificate: signed by the cluster CA, naming every address and name
a node reaches the master at; the board's check trusts that CA alone."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bramble.jobs.tls import create_cluster_tls
from bramble.provision.render import enroll_url, join_toml
from bramble.spec import parse_spec
from bramble.trust.certs import Ca
from bramble.trust.https import HttpsError, client_context, server_certificate, server_hosts

SPEC = parse_spec(
    '[network]\nmaster_address = "10.42.0.1"\n\n[master]\nname = "boss"\n\n'
    '[[nodes]]\nname = "node-1"\nmac = "b8:27:eb:00:00:01"\n'
)


def test_the_join_file_names_the_https_port_the_certificate_names() -> None:
    assert enroll_url(SPEC) == "https://10.42.0.1:8081"
    assert 'master = "https://10.42.0.1:8081"' in join_toml(SPEC, "t")
    hosts = server_hosts(SPEC)
    assert hosts[0] == "10.42.0.1" and {"boss", "boss.cluster"} <= set(hosts)
    moved = parse_spec('[enroll]\nport = 9443\n\n[dashboard]\nbind = "10.42.0.2"\n')
    assert enroll_url(moved) == "https://10.42.0.2:9443" and "10.42.0.2" in server_hosts(moved)


def test_server_certificate_is_the_cluster_cas_for_its_hosts(tmp_path: Path) -> None:
    paths = create_cluster_tls(tmp_path / "tls")
    ca = Ca(paths.ca_cert.read_text(), paths.ca_key.read_text())
    now = datetime.datetime.now(datetime.UTC)
    cert_pem, key_pem = server_certificate(ca, server_hosts(SPEC), now)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    cert.verify_directly_issued_by(ca_cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.42.0.1") in names.get_values_for_type(x509.IPAddress)
    assert {"boss", "boss.cluster"} <= set(names.get_values_for_type(x509.DNSName))
    assert "PRIVATE KEY" in key_pem
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)


def test_the_board_needs_the_ca_certificate(tmp_path: Path) -> None:
    with pytest.raises(HttpsError, match="no cluster CA certificate"):
        client_context(tmp_path / "ca.pem")
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(HttpsError, match="not a CA certificate"):
        client_context(tmp_path / "ca.pem")
