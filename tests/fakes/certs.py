"""Self-signed X.509 certificates for the test servers and fakes, made at test time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def self_signed(key: Any, common_name: str) -> Any:
    """A certificate for ``key``, valid from yesterday to the day after tomorrow."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
