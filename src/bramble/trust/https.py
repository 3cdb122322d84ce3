"""Enrollment over HTTPS: the master's server certificate, signed by the cluster CA at start,
and the board's check of it against the CA certificate in the node image.

The board sends its telemetry key when it enrolls, so it asks only over TLS and only a master
whose certificate chains to the cluster CA and names the address it asks at. The master makes
a fresh key and certificate every time it starts (named for its cluster address, its name and
its fully qualified name), so the certificate follows the spec and never needs renewing, and
the CA key stays where it is, in `tls/` beside the master's spec.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from pathlib import Path

from bramble.errors import BrambleError
from bramble.spec import Spec
from bramble.trust.certs import Ca

ENROLL_OU = "bramble enrollment"


class HttpsError(BrambleError):
    """The TLS the board or the master needs for enrollment is missing or bad."""


def server_hosts(spec: Spec) -> list[str]:
    """The names the master's enrollment certificate holds: every address and name a node may
    reach it at."""
    from bramble.provision.render import master_host

    hosts = [master_host(spec), str(spec.network.master_address), spec.dashboard_bind]
    hosts += [spec.master.name, spec.fqdn(spec.master.name)]
    return list(dict.fromkeys(h for h in hosts if h and h != "0.0.0.0"))


def server_certificate(ca: Ca, hosts: list[str], now: datetime.datetime) -> tuple[str, str]:
    """A fresh key and its certificate (both PEM), signed by CA, for HOSTS: (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from bramble.jobs.tls import leaf_builder

    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise HttpsError("the cluster CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ENROLL_OU),
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "bramble-master"),
        ]
    )
    cert = leaf_builder(subject, ca_cert.subject, key.public_key(), hosts, now)
    cert_pem = cert.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem.decode(), key_pem.decode()


def server_files(cert: str, key: str) -> tempfile.TemporaryDirectory[str]:
    """A private temporary directory holding CERT as `cert.pem` and KEY as `key.pem` (mode
    0600), for a TLS server that loads them from files; removed when it is cleaned up."""
    directory = tempfile.TemporaryDirectory(prefix="bramble-enroll-")
    root = Path(directory.name)
    (root / "cert.pem").write_text(cert)
    fd = os.open(root / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key)
    return directory


def client_context(ca_file: Path) -> ssl.SSLContext:
    """What the board checks the master with: the CA certificate at CA_FILE (the node image's)
    alone, the master's name or address checked, TLS 1.2 at least."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
    except FileNotFoundError:
        raise HttpsError(
            f"{ca_file}: no cluster CA certificate to check the master with (it comes with "
            "the node image: `bramble render` puts tls/ca.pem beside the spec)"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise HttpsError(f"{ca_file}: not a CA certificate ({exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
