"""The cluster's TLS material: a private CA and the certificates Dask uses for mutual TLS.

`bramble init` calls :func:`create_cluster_tls` to write, under ``<spec dir>/tls/``:

- ``ca.pem`` / ``ca-key.pem``: the cluster CA (the key stays on the master, mode 0600);
- ``scheduler.pem`` / ``scheduler-key.pem``: the scheduler's certificate;
- ``worker.pem`` / ``worker-key.pem``: the certificate every node's worker presents;
- ``client.pem`` / ``client-key.pem``: the certificate job drivers and the master present.

Dask checks that the peer's certificate chains to the CA (not its host name: nodes get
dynamic addresses), so only holders of a certificate signed by this CA can talk to the
scheduler or the workers.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bramble.errors import BrambleError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

log = logging.getLogger(__name__)

Role = Literal["scheduler", "worker", "client"]
ROLES: tuple[Role, ...] = ("scheduler", "worker", "client")
VALID_DAYS = 3650


class TlsError(BrambleError):
    """The cluster's TLS material is missing or unreadable."""


@dataclass(frozen=True, slots=True)
class TlsPaths:
    """Where the TLS files of one cluster live."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate every party trusts."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA private key (needed only to issue more certificates)."""
        return self.directory / "ca-key.pem"

    def cert(self, role: Role) -> Path:
        """The certificate of ROLE."""
        return self.directory / f"{role}.pem"

    def key(self, role: Role) -> Path:
        """The private key of ROLE."""
        return self.directory / f"{role}-key.pem"

    def check(self, role: Role) -> None:
        """Raise TlsError unless the CA and ROLE's certificate and key exist."""
        for path in (self.ca_cert, self.cert(role), self.key(role)):
            if not path.is_file():
                raise TlsError(
                    f"{path}: missing TLS file (run `bramble init` to create the cluster's "
                    "certificates, or copy the master's tls/ directory)"
                )

    def material(self, role: Role) -> TlsMaterial:
        """The CA certificate and ROLE's certificate and key, read now (TlsError if missing).

        A process that drops its privileges reads them first, or is handed them: the keys
        are readable by root alone.
        """
        self.check(role)
        try:
            return TlsMaterial(
                self.ca_cert.read_text(), self.cert(role).read_text(), self.key(role).read_text()
            )
        except OSError as exc:
            raise TlsError(f"cannot read the TLS files in {self.directory}: {exc}") from None


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """A role's TLS files as PEM text, held in memory."""

    ca: str
    cert: str
    key: str = field(repr=False)


def _key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(path, 0o644)


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    out: list[x509.GeneralName] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _issue(
    role: Role,
    cluster: str,
    hosts: list[str],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"bramble {cluster}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"bramble-{role}"),
        ]
    )
    builder = leaf_builder(subject, ca_cert.subject, key.public_key(), hosts, now)
    return builder.sign(ca_key, hashes.SHA256()), key


def leaf_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    hosts: list[str],
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    """A certificate for SUBJECT's PUBLIC_KEY, issued by ISSUER, named for HOSTS (addresses or
    names), valid VALID_DAYS from NOW, to be signed. Every Dask party both listens and
    connects (workers talk to each other), so each is good for both ends of a connection."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
    )


def create_cluster_tls(
    directory: Path,
    *,
    cluster: str = "cluster",
    hosts: list[str] | None = None,
    force: bool = False,
) -> TlsPaths:
    """Create the cluster CA and the scheduler, worker and client certificates in DIRECTORY.

    Existing material is kept unless FORCE (re-running `bramble init` must not lock the
    nodes out). HOSTS go into each certificate's subject alternative names for tools that
    check them; Dask itself checks only the chain.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    paths = TlsPaths(directory)
    if paths.ca_cert.exists() and not force:
        log.info("TLS material already in %s; keeping it", directory)
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    names = hosts or ["localhost", "127.0.0.1"]
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"bramble {cluster}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"bramble {cluster} CA"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(paths.ca_key, ca_key)
    _write_cert(paths.ca_cert, ca_cert)
    for role in ROLES:
        cert, key = _issue(role, cluster, names, ca_cert, ca_key, now)
        _write_key(paths.key(role), key)
        _write_cert(paths.cert(role), cert)
    log.info("wrote cluster CA and certificates to %s", directory)
    return paths


def create_tls_for_spec(spec_dir: Path, *, force: bool = False) -> TlsPaths:
    """`bramble init`'s hook: create the TLS material under ``SPEC_DIR/tls``."""
    return create_cluster_tls(spec_dir / "tls", force=force)
