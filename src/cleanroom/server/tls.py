"""TLS for every listener: TLS 1.3 only, and a P-384 self-signed certificate for `--dev-tls`.

Sealing already protects payloads end to end (a TLS-terminating proxy sees only ciphertext), but API keys
and metadata ride in headers, so the transport is TLS 1.3 with no fallback.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cleanroom.errors import ConfigurationError
from cleanroom.storage import atomic_write_bytes, ensure_private_dir


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load TLS certificate {cert_file} / key {key_file}: {exc}") from exc
    return context


def dev_certificate(data_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A P-384 self-signed certificate for local use, created once in DATA_DIR/tls/."""
    tls_dir = ensure_private_dir(Path(data_dir) / "tls")
    cert_path, key_path = tls_dir / "dev-cert.pem", tls_dir / "dev-key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP384R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in {*hosts, "127.0.0.1", "::1"}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            if host and host != "localhost":
                names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cleanroom dev server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA384())
    )
    atomic_write_bytes(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path
