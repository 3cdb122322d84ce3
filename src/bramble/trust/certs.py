"""A node's own Dask worker certificate: the board makes its key and a CSR, the master's CA
signs it with CN = the node's name. The CA key never leaves the master; the node's key never
leaves the board.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from bramble.errors import BrambleError
from bramble.jobs.gate import WORKER_OU
from bramble.jobs.tls import leaf_builder

VALID_DAYS = 3650


class CsrError(BrambleError):
    """A certificate signing request the master will not sign."""


@dataclass(frozen=True, slots=True)
class Ca:
    """The cluster CA as PEM text: its certificate and (on the master only) its key."""

    cert: str
    key: str


def make_csr(name: str) -> tuple[str, str]:
    """A fresh private key and a CSR for it (both PEM), made on the board for NAME (a hint:
    the master puts the node's real name in the certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def sign_worker(csr_pem: str, name: str, hosts: list[str], ca: Ca, now: datetime.datetime) -> str:
    """The worker certificate (PEM) for the CSR CSR_PEM: CN = NAME, OU = WORKER_OU, HOSTS as
    its DNS names; CsrError if the CSR is not one or its signature does not verify."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise CsrError("the CSR is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise CsrError("the CSR's signature does not verify")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CsrError("the cluster CA key is not an EC key")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, WORKER_OU),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    # Workers listen (for the scheduler and each other) and connect: both uses.
    builder = leaf_builder(subject, ca_cert.subject, csr.public_key(), hosts, now)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def common_name(cert_pem: str) -> str:
    """The CN of the certificate CERT_PEM."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
