"""The listener speaks TLS 1.3 only, with the P-384 dev certificate."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec


def address(server) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    parts = urlsplit(server.url)
    assert parts.scheme == "https"
    return parts.hostname or "127.0.0.1", parts.port or 443


def handshake(server, version: ssl.TLSVersion) -> str:  # type: ignore[no-untyped-def]
    context = ssl.create_default_context(cafile=server.cert)
    context.minimum_version = version
    context.maximum_version = version
    host, port = address(server)
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return str(tls.version())


def test_tls13_is_accepted(shared_server) -> None:
    assert handshake(shared_server, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2])
def test_older_tls_is_refused(shared_server, version: ssl.TLSVersion) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(shared_server, version)


def test_dev_certificate_is_p384_for_loopback(shared_server) -> None:
    cert = x509.load_pem_x509_certificate(open(shared_server.cert, "rb").read())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp384r1"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
