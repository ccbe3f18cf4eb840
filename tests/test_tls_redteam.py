"""The TLS and mTLS setup, attacked: client certificates that are expired, not yet valid, for the wrong
purpose or signed by a leaf; server certificates that are expired, not yet valid, or do not match their key;
private keys anybody can write (refused) or read (a warning); a TLS 1.2 client; and `--no-tls` on every
spelling of a non-loopback host.

Startup problems must be one clear `configuration_error`, never a traceback; the in-process listener
(`support.hardening.ThreadServer`) keeps this file fast."""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cleanroom.config import Settings
from cleanroom.errors import ConfigurationError
from cleanroom.server.runner import tls_files
from cleanroom.server.tls import CertificateReloader, dev_certificate, server_tls_context
from support.hardening import ThreadServer, client_context, open_socket, request, scope_echo_app
from support.pki import Issued, make_ca, write_issued
from support.server import REPO

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def leaf(
    issuer: Issued,
    directory: Path,
    stem: str,
    *,
    usages: list[x509.ObjectIdentifier] | None,
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + 30 * DAY,
) -> Issued:
    """A leaf certificate with the validity and extended key usage under test (None: no EKU extension)."""
    key = ec.generate_private_key(ec.SECP384R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), _ip("127.0.0.1")]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return write_issued(directory, stem, builder.sign(issuer.key, hashes.SHA384()), key)


def _ip(address: str) -> x509.IPAddress:
    import ipaddress

    return x509.IPAddress(ipaddress.ip_address(address))


SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


@dataclass
class PKI:
    server_ca: Issued
    server: Issued
    server_expired: Issued
    server_future: Issued
    client_ca: Issued
    clients: dict[str, Issued]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = tmp_path_factory.mktemp("tls-redteam")
    server_ca, client_ca = make_ca(root / "sca", "server-ca"), make_ca(root / "cca", "client-ca")
    other_ca = make_ca(root / "oca", "other-ca")
    good = leaf(client_ca, root / "c", "good", usages=[CLIENT])
    clients = {
        "good": good,
        "no-eku": leaf(client_ca, root / "c", "no-eku", usages=None),
        "expired": leaf(
            client_ca, root / "c", "expired", usages=[CLIENT], not_before=NOW - 9 * DAY, not_after=NOW - DAY
        ),
        "not-yet-valid": leaf(client_ca, root / "c", "future", usages=[CLIENT], not_before=NOW + DAY),
        "server-eku": leaf(client_ca, root / "c", "server-eku", usages=[SERVER]),
        "code-signing-eku": leaf(client_ca, root / "c", "codesign", usages=[ExtendedKeyUsageOID.CODE_SIGNING]),
        "signed-by-a-leaf": leaf(good, root / "c", "by-leaf", usages=[CLIENT]),
        "other-ca": leaf(other_ca, root / "c", "other", usages=[CLIENT]),
    }
    return PKI(
        server_ca=server_ca,
        server=leaf(server_ca, root / "s", "server", usages=[SERVER]),
        server_expired=leaf(
            server_ca, root / "s", "old", usages=[SERVER], not_before=NOW - 9 * DAY, not_after=NOW - DAY
        ),
        server_future=leaf(server_ca, root / "s", "new", usages=[SERVER], not_before=NOW + DAY),
        client_ca=client_ca,
        clients=clients,
    )


def attempt(url: str, context: ssl.SSLContext) -> int | str:
    try:
        with open_socket(url, context) as sock:
            return request(sock, "GET", "/who", headers={"Connection": "close"})[0]
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        return type(exc).__name__


# --- client certificates ----------------------------------------------------------------------------------
ACCEPTED = {"good", "no-eku"}  # no EKU extension means any purpose (RFC 5280 §4.2.1.12)


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_client_certificates_that_must_not_pass(pki: PKI, mode: Any) -> None:
    context = server_tls_context(
        pki.server.cert_path, pki.server.key_path, client_ca=pki.client_ca.cert_path, client_cert=mode
    )
    with ThreadServer(scope_echo_app, context=context) as server:
        outcome = {
            name: attempt(server.url, client_context(pki.server_ca.cert_path, issued.cert_path, issued.key_path))
            for name, issued in pki.clients.items()
        }
    assert {name for name, status in outcome.items() if status == 200} == ACCEPTED, outcome


def test_tls12_client_is_refused_in_process(pki: PKI) -> None:
    context = server_tls_context(pki.server.cert_path, pki.server.key_path)
    with ThreadServer(scope_echo_app, context=context) as server:
        tls12 = client_context(pki.server_ca.cert_path)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert attempt(server.url, tls12) in ("SSLError", "SSLEOFError")  # alert, or the connection cut
        assert attempt(server.url, client_context(pki.server_ca.cert_path)) == 200


# --- the server's own certificate and key -------------------------------------------------------------------
def test_expired_or_not_yet_valid_server_certificate_is_a_startup_error(pki: PKI) -> None:
    with pytest.raises(ConfigurationError, match="expired on"):
        server_tls_context(pki.server_expired.cert_path, pki.server_expired.key_path)
    with pytest.raises(ConfigurationError, match="not valid before"):
        server_tls_context(pki.server_future.cert_path, pki.server_future.key_path)


def test_certificate_and_key_that_do_not_match_are_a_startup_error(pki: PKI) -> None:
    with pytest.raises(ConfigurationError, match="cannot load TLS certificate"):
        server_tls_context(pki.server.cert_path, pki.clients["good"].key_path)


@pytest.mark.parametrize("mode", [0o602, 0o606, 0o666], ids=lambda m: f"{m:04o}")
def test_private_key_anybody_can_write_is_refused(pki: PKI, tmp_path: Path, mode: int) -> None:
    key = tmp_path / "key.pem"
    shutil.copy(pki.server.key_path, key)
    key.chmod(mode)
    with pytest.raises(ConfigurationError, match="anybody can replace it"):
        server_tls_context(pki.server.cert_path, key)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o444], ids=lambda m: f"{m:04o}")
def test_private_key_others_can_read_is_loaded_with_a_warning_naming_the_fix(
    pki: PKI, tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Kubernetes secret volumes default to 0644: refusing would turn a default deployment into an outage."""
    key = tmp_path / "key.pem"
    shutil.copy(pki.server.key_path, key)
    key.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="cleanroom.server"):
        server_tls_context(pki.server.cert_path, key)
    assert "everybody on this host can read it" in caplog.text and "chmod 600" in caplog.text


def test_private_key_its_group_can_read_is_loaded_with_a_warning(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "key.pem"
    shutil.copy(pki.server.key_path, key)
    key.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="cleanroom.server"):
        server_tls_context(pki.server.cert_path, key)
    assert "its group can read it" in caplog.text


def test_an_encrypted_private_key_is_a_clear_error_not_a_password_prompt(pki: PKI, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(
        pki.server.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    key.chmod(0o600)
    with pytest.raises(ConfigurationError, match="is encrypted"):
        server_tls_context(pki.server.cert_path, key)
    context = server_tls_context(pki.server.cert_path, pki.server.key_path)
    assert CertificateReloader(context, pki.server.cert_path, key).reload() is False


def test_reload_refuses_an_expired_certificate_or_a_writable_key(pki: PKI, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pki.server.cert_path, cert)
    shutil.copy(pki.server.key_path, key)
    context = server_tls_context(cert, key)
    reloader = CertificateReloader(context, cert, key)
    shutil.copy(pki.server_expired.cert_path, cert)
    shutil.copy(pki.server_expired.key_path, key)
    assert reloader.reload() is False
    shutil.copy(pki.server.cert_path, cert)
    shutil.copy(pki.server.key_path, key)
    key.chmod(0o646)
    assert reloader.reload() is False
    key.chmod(0o600)
    assert reloader.reload() is True


def test_an_expired_dev_certificate_is_replaced(tmp_path: Path, pki: PKI) -> None:
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir(mode=0o700)
    shutil.copy(pki.server_expired.cert_path, tls_dir / "dev-cert.pem")
    shutil.copy(pki.server_expired.key_path, tls_dir / "dev-key.pem")
    cert_path, key_path = dev_certificate(tmp_path, ["127.0.0.1"])
    fresh = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert fresh.not_valid_after_utc > NOW + 30 * DAY
    server_tls_context(cert_path, key_path)  # and it loads
    assert dev_certificate(tmp_path, ["127.0.0.1"]) == (cert_path, key_path)
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()) == fresh  # kept while valid


def test_cli_startup_errors_are_one_line_not_a_traceback(pki: PKI, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cleanroom",
            "serve",
            "--no-reexec",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            "0",
            "--models",
            "echo",
            "--tls-cert",
            str(pki.server.cert_path),
            "--tls-key",
            str(pki.clients["good"].key_path),
        ],
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode != 0
    assert b"Traceback" not in result.stderr, result.stderr[-2000:]
    assert b"configuration_error" in result.stderr and b"cannot load TLS certificate" in result.stderr


# --- --no-tls only on loopback -------------------------------------------------------------------------------
REFUSED_HOSTS = ["0.0.0.0", "::", "[::]", "192.0.2.10", "2001:db8::1", "::ffff:127.0.0.1", "127.1", "example.com"]
ACCEPTED_HOSTS = ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]


@pytest.mark.parametrize("host", [*REFUSED_HOSTS, socket.gethostname()])
def test_no_tls_off_loopback_is_refused(tmp_path: Path, host: str) -> None:
    """Host names other than `localhost` are refused whatever they resolve to (no DNS decides this), and so
    are spellings of loopback that are not plain literals (`127.1`, IPv4-mapped)."""
    with pytest.raises(ConfigurationError, match="--no-tls is refused"):
        tls_files(Settings(data_dir=tmp_path, tls_mode="off", host=host))


@pytest.mark.parametrize("host", ACCEPTED_HOSTS)
def test_no_tls_on_loopback_is_allowed(tmp_path: Path, host: str) -> None:
    assert tls_files(Settings(data_dir=tmp_path, tls_mode="off", host=host)) is None


def test_key_file_modes_of_the_test_pki_are_private(pki: PKI) -> None:
    """The control for the mode tests: every key this file writes starts 0600."""
    assert all(os.stat(i.key_path).st_mode & 0o077 == 0 for i in [pki.server, *pki.clients.values()])
