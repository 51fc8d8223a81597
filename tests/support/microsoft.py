"""Microsoft access for tests: the real MSAL and httpx pointed at a FakeGraph, retries without sleeping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from daemon.config.sections import MicrosoftConfig
from daemon.microsoft.access import MicrosoftAccess
from tests.support.graph_fake import CLIENT_ID, TENANT, FakeGraph


def config_for(fake: FakeGraph, **more: object) -> MicrosoftConfig:
    return MicrosoftConfig.model_validate(
        {
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "authority": fake.authority,
            "graph_endpoint": fake.graph,
            "ca_file": fake.ca.ca_file,
            **more,
        }
    )


def access_for(fake: FakeGraph, slept: list[float] | None = None, **more: object) -> MicrosoftAccess:
    """Access to the fake; the pauses between retries are recorded in `slept`, not slept."""
    pauses = slept if slept is not None else []
    return MicrosoftAccess(config_for(fake, **more), sleep=pauses.append)


@dataclass(frozen=True)
class AppCertificate:
    """A throwaway app certificate: `file` holds the RSA private key, and the certificate if `with_cert`."""

    file: Path
    cert: x509.Certificate
    thumbprint: str  # SHA-1, hex, upper case, as the Entra ID portal shows it


def app_certificate(directory: Path, name: str = "app", *, with_cert: bool = True) -> AppCertificate:
    now = datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"followthrough {name}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    file = directory / f"{name}.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if with_cert:
        pem += cert.public_bytes(serialization.Encoding.PEM)
    file.write_bytes(pem)
    return AppCertificate(file, cert, cert.fingerprint(hashes.SHA1()).hex().upper())
