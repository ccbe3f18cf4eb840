"""The TLS listener, attacked from outside: protocol versions and key-exchange groups (openssl s_client),
client certificates (required and optional, missing and from another CA), the verified identity reaching
the app and its binding to a tenant, and a certificate reload on SIGHUP that keeps open connections."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cleanroom.keys.registry import Registry
from cleanroom.server.mtls import (
    ClientCertificateRequired,
    ClientIdentityMismatch,
    bind_client_identity,
    check_client_identity,
    unbind_client_identity,
)
from cleanroom.server.tls import server_tls_context
from support.hardening import (
    ThreadServer,
    address,
    client_context,
    open_socket,
    request,
    scope_echo_app,
)
from support.pki import Issued, issue, make_ca
from support.server import server_env, start_server


class PKI:
    def __init__(self, root: Path) -> None:
        self.server_ca = make_ca(root / "server-ca", "test-server-ca")
        self.server_one = issue(
            self.server_ca, root / "server", "one", common_name="server-one", dns=("localhost",), ips=("127.0.0.1",)
        )
        self.server_two = issue(
            self.server_ca, root / "server", "two", common_name="server-two", dns=("localhost",), ips=("127.0.0.1",)
        )
        self.client_ca = make_ca(root / "client-ca", "test-client-ca")
        self.client_a = issue(
            self.client_ca, root / "clients", "a", common_name="client-a", dns=("client-a.test",), client=True
        )
        self.client_b = issue(
            self.client_ca, root / "clients", "b", common_name="client-b", dns=("client-b.test",), client=True
        )
        self.other_ca = make_ca(root / "other-ca", "attacker-ca")
        self.client_other = issue(
            self.other_ca, root / "clients", "other", common_name="client-a", dns=("client-a.test",), client=True
        )  # same names, wrong issuer


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def optional_server(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Any:
    """A real `cleanroom serve` with --client-cert-optional and certificate files we can replace."""
    base = tmp_path_factory.mktemp("mtls-server")
    live = base / "live"
    live.mkdir()
    shutil.copy(pki.server_one.cert_path, live / "cert.pem")
    shutil.copy(pki.server_one.key_path, live / "key.pem")
    server = start_server(
        base / "data",
        "--models",
        "echo",
        "--tls-cert",
        str(live / "cert.pem"),
        "--tls-key",
        str(live / "key.pem"),
        "--client-ca",
        str(pki.client_ca.cert_path),
        "--client-cert-optional",
        env=server_env(CLEANROOM_KEEP_ALIVE_TIMEOUT_S="30"),
    )
    server.live = live  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def s_client(url: str, ca: Path, *args: str) -> subprocess.CompletedProcess[str]:
    host, port = address(url)
    return subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{host}:{port}",
            "-servername",
            "localhost",
            "-CAfile",
            str(ca),
            "-verify_return_error",
            "-brief",
            *args,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
    )


def attempt(url: str, context: ssl.SSLContext) -> int | str:
    """Status of GET /healthz with this client context, or the name of the failure."""
    try:
        with open_socket(url, context) as sock:
            status, _, _ = request(sock, "GET", "/healthz", headers={"Connection": "close"})
            return status
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        return type(exc).__name__


# --- protocol versions and groups -------------------------------------------------------------------
def test_openssl_tls13_succeeds_and_tls12_is_refused(optional_server: Any, pki: PKI) -> None:
    ok = s_client(optional_server.url, pki.server_ca.cert_path, "-tls1_3")
    assert ok.returncode == 0, ok.stderr
    assert "Protocol version: TLSv1.3" in ok.stderr
    for old in ("-tls1_2", "-tls1_1"):
        refused = s_client(optional_server.url, pki.server_ca.cert_path, old)
        assert refused.returncode != 0 and "Protocol version" not in refused.stderr, (old, refused.stderr)


@pytest.mark.parametrize(
    ("group", "accepted"),
    [("X25519", True), ("P-384", True), ("P-256", True), ("ffdhe2048", False), ("ffdhe4096", False), ("X448", False)],
)
def test_key_exchange_is_ecdhe_only(optional_server: Any, pki: PKI, group: str, accepted: bool) -> None:
    result = s_client(optional_server.url, pki.server_ca.cert_path, "-tls1_3", "-groups", group)
    assert (result.returncode == 0) == accepted, result.stderr
    if accepted:
        shown = {"X25519": "X25519", "P-384": "secp384r1", "P-256": "prime256v1"}[group]
        assert f"Server Temp Key: {shown}" in result.stderr.replace("ECDH, ", ""), result.stderr


# --- client certificates -------------------------------------------------------------------------------
def test_optional_mode_accepts_no_certificate_but_refuses_a_foreign_ca(optional_server: Any, pki: PKI) -> None:
    ca = pki.server_ca.cert_path
    assert attempt(optional_server.url, client_context(ca)) == 200
    assert attempt(optional_server.url, client_context(ca, pki.client_a.cert_path, pki.client_a.key_path)) == 200
    foreign = attempt(optional_server.url, client_context(ca, pki.client_other.cert_path, pki.client_other.key_path))
    assert foreign != 200, "a certificate from another CA was accepted"


@pytest.fixture(scope="module")
def required_server(pki: PKI) -> Any:
    context = server_tls_context(
        pki.server_one.cert_path, pki.server_one.key_path, client_ca=pki.client_ca.cert_path, client_cert="required"
    )
    with ThreadServer(scope_echo_app, context=context) as server:
        yield server


def test_required_mode_refuses_missing_and_foreign_certificates(required_server: Any, pki: PKI) -> None:
    ca = pki.server_ca.cert_path
    assert attempt(required_server.url, client_context(ca)) != 200, "no client certificate was accepted"
    foreign = client_context(ca, pki.client_other.cert_path, pki.client_other.key_path)
    assert attempt(required_server.url, foreign) != 200, "a certificate from another CA was accepted"
    self_signed = client_context(ca, pki.other_ca.cert_path, pki.other_ca.key_path)
    assert attempt(required_server.url, self_signed) != 200, "a self-signed certificate was accepted"
    assert attempt(required_server.url, client_context(ca, pki.client_a.cert_path, pki.client_a.key_path)) == 200


def verified_identities_over_tls(url: str, pki: PKI, client: Issued) -> list[str]:
    import json

    context = client_context(pki.server_ca.cert_path, client.cert_path, client.key_path)
    with open_socket(url, context) as sock:
        status, _, body = request(sock, "GET", "/who", headers={"Connection": "close"})
    assert status == 200
    return list(json.loads(body)["identities"])


def test_verified_identity_reaches_the_app(required_server: Any, pki: PKI) -> None:
    identities = verified_identities_over_tls(required_server.url, pki, pki.client_a)
    assert "dns:client-a.test" in identities
    assert "subject:CN=client-a" in identities
    assert "dns:client-b.test" not in identities


def test_identity_binding_is_enforced(required_server: Any, pki: PKI, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.update(
        lambda doc: doc["tenants"].update({"t_alpha": {"tenant_id": "t_alpha", "name": "alpha", "credentials": []}})
    )

    class FakeRequest:
        def __init__(self, identities: list[str] | None) -> None:
            tls = {"cleanroom_client_identities": identities} if identities is not None else None
            self.scope = {"type": "http", "extensions": {"tls": tls} if tls is not None else {}}

    as_a = FakeRequest(verified_identities_over_tls(required_server.url, pki, pki.client_a))
    as_b = FakeRequest(verified_identities_over_tls(required_server.url, pki, pki.client_b))
    anonymous = FakeRequest(None)

    check_client_identity(anonymous, registry.tenant("alpha"))  # unbound tenant: API key alone is enough
    assert bind_client_identity(registry, "alpha", "DNS:Client-A.test") == ["dns:client-a.test"]
    record = registry.tenant("alpha")
    check_client_identity(as_a, record)
    with pytest.raises(ClientIdentityMismatch):
        check_client_identity(as_b, record)
    with pytest.raises(ClientCertificateRequired):
        check_client_identity(anonymous, record)
    bind_client_identity(registry, "t_alpha", "subject:CN=client-b")
    check_client_identity(as_b, registry.tenant("alpha"))
    assert unbind_client_identity(registry, "alpha", "dns:client-a.test") == ["subject:CN=client-b"]
    with pytest.raises(ClientIdentityMismatch):
        check_client_identity(as_a, registry.tenant("alpha"))
    assert unbind_client_identity(registry, "alpha") == []
    check_client_identity(anonymous, registry.tenant("alpha"))


# --- certificate reload ------------------------------------------------------------------------------
def peer_common_name(sock: ssl.SSLSocket) -> str:
    cert = sock.getpeercert()
    assert cert is not None
    return dict(x[0] for x in cert["subject"])["commonName"]


def new_connection_cn(url: str, pki: PKI) -> str:
    with open_socket(url, client_context(pki.server_ca.cert_path)) as sock:
        assert isinstance(sock, ssl.SSLSocket)
        return peer_common_name(sock)


def replace_atomically(source: Path, target: Path) -> None:
    tmp = target.with_suffix(".new")
    shutil.copy(source, tmp)
    os.replace(tmp, target)


def wait_for_cn(url: str, pki: PKI, expected: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while new_connection_cn(url, pki) != expected:
        assert time.monotonic() < deadline, f"new handshakes never presented {expected}"
        time.sleep(0.05)


def test_sighup_reloads_the_certificate_without_dropping_connections(optional_server: Any, pki: PKI) -> None:
    live: Path = optional_server.live
    url = optional_server.url
    assert new_connection_cn(url, pki) == "server-one"
    kept = open_socket(url, client_context(pki.server_ca.cert_path))
    assert isinstance(kept, ssl.SSLSocket)
    try:
        assert request(kept, "GET", "/healthz")[0] == 200
        replace_atomically(pki.server_two.cert_path, live / "cert.pem")
        replace_atomically(pki.server_two.key_path, live / "key.pem")
        os.kill(optional_server.pid, signal.SIGHUP)
        wait_for_cn(url, pki, "server-two")
        # the open keep-alive connection still answers, on its original certificate
        assert request(kept, "GET", "/healthz")[0] == 200
        assert peer_common_name(kept) == "server-one"

        # a broken replacement is refused: the server keeps presenting the last good certificate
        (live / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        os.kill(optional_server.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "certificate reload refused" not in optional_server.log_path.read_text():
            assert time.monotonic() < deadline, "the bad reload was not reported"
            time.sleep(0.05)
        assert new_connection_cn(url, pki) == "server-two"
        assert request(kept, "GET", "/healthz")[0] == 200
        assert optional_server.process.poll() is None
    finally:
        kept.close()
        replace_atomically(pki.server_one.cert_path, live / "cert.pem")
        replace_atomically(pki.server_one.key_path, live / "key.pem")


# --- testssl.sh ----------------------------------------------------------------------------------------
# Findings that describe the certificate an operator installs, not the server: the test PKI has no CRL or
# OCSP URL, and loopback has no DNS CAA record. Everything else must be OK or INFO.
CERTIFICATE_PROVENANCE_FINDINGS = {"cert_revocation", "DNS_CAArecord"}


def test_testssl_findings_are_clean(optional_server: Any, pki: PKI, tmp_path: Path) -> None:
    """testssl.sh (Debian package) with its fast options: protocols, ciphers, forward secrecy, server
    preferences and defaults, HTTP security headers and the vulnerability checks, in about 30 s."""
    import json

    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    assert testssl, "testssl.sh is not installed: apt-get install -y testssl.sh (scripts/install-test-services.sh)"
    host, port = address(optional_server.url)
    report = tmp_path / "testssl.json"
    result = subprocess.run(
        [
            testssl,
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--fast",
            "--ip",
            "one",
            "--connect-timeout",
            "5",
            "--openssl-timeout",
            "5",
            "--add-ca",
            str(pki.server_ca.cert_path),
            "-p",
            "-s",
            "-f",
            "-P",
            "-S",
            "-h",
            "-U",
            "--jsonfile-pretty",
            str(report),
            f"{host}:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert report.exists(), f"testssl.sh produced no report (rc {result.returncode}):\n{result.stdout[-3000:]}"
    findings = [
        f
        for scan in json.loads(report.read_text())["scanResult"]
        for value in scan.values()
        if isinstance(value, list)
        for f in value
    ]
    assert len(findings) > 50, "testssl.sh ran too few checks to mean anything"
    by_id = {f["id"]: f for f in findings}
    assert by_id["TLS1_3"]["finding"].startswith("offered")
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2"):
        assert by_id[old]["finding"].startswith("not offered"), by_id[old]
    assert "63072000" in by_id["HSTS_time"]["finding"] and by_id["HSTS_subdomains"]["severity"] == "OK"
    bad = [
        f"{f['severity']} {f['id']}: {f['finding']}"
        for f in findings
        if f["severity"] not in ("OK", "INFO") and f["id"] not in CERTIFICATE_PROVENANCE_FINDINGS
    ]
    assert not bad, "testssl.sh findings:\n" + "\n".join(bad)


def test_client_cert_command_binds_lists_and_unbinds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import json

    from cleanroom.server.mtls import register

    Registry(tmp_path).update(
        lambda doc: doc["tenants"].update({"t_beta": {"tenant_id": "t_beta", "name": "beta", "credentials": []}})
    )
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> list[str]:
        args = parser.parse_args([*argv, "--data-dir", str(tmp_path)])
        assert args.func(args) == 0
        return list(json.loads(capsys.readouterr().out)["client_identities"])

    assert run("client-cert", "bind", "beta", "subject:CN=client-b,O=Example") == ["subject:CN=client-b,O=Example"]
    assert run("client-cert", "bind", "beta", "IP:127.0.0.1") == ["subject:CN=client-b,O=Example", "ip:127.0.0.1"]
    assert run("client-cert", "list", "beta") == ["subject:CN=client-b,O=Example", "ip:127.0.0.1"]
    assert run("client-cert", "unbind", "beta", "ip:127.0.0.1") == ["subject:CN=client-b,O=Example"]
    assert run("client-cert", "unbind", "beta", "--all") == []
    from cleanroom.errors import BadRequest

    with pytest.raises(BadRequest):
        run("client-cert", "bind", "beta", "fingerprint:abc")


def test_inconsistent_tls_settings_are_refused_at_start(pki: PKI, tmp_path: Path) -> None:
    from cleanroom.config import Settings
    from cleanroom.errors import ConfigurationError
    from cleanroom.server.runner import tls_files
    from cleanroom.server.tls import restrict_key_exchange_groups

    with pytest.raises(ConfigurationError, match="need TLS"):
        tls_files(Settings(data_dir=tmp_path, tls_mode="off", tls_client_cert="required"))
    with pytest.raises(ConfigurationError, match="client-ca"):
        server_tls_context(pki.server_one.cert_path, pki.server_one.key_path, client_cert="optional")
    with pytest.raises(ConfigurationError, match="without"):
        server_tls_context(pki.server_one.cert_path, pki.server_one.key_path, client_ca=pki.client_ca.cert_path)
    with pytest.raises(ConfigurationError, match="not allowed"):
        restrict_key_exchange_groups(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ["X25519", "ffdhe2048"])
    assert restrict_key_exchange_groups(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)) == "groups X25519:P-384:P-256"


def test_identity_binding_through_a_real_request(optional_server: Any, pki: PKI) -> None:
    """End to end: a tenant bound to client-a's certificate is refused without it or with client-b's,
    before anything is decrypted; an unbound tenant still works with its API key alone."""
    from cleanroom.client import Client, ClientError

    server = optional_server
    os.kill(server.pid, signal.SIGHUP)  # serve the certificate file again (an earlier test swapped it)
    wait_for_cn(server.url, pki, "server-one")
    server.create_tenant("bound")
    server.create_tenant("free")
    server.cli("client-cert", "bind", "bound", "dns:client-a.test", "--data-dir", str(server.data_dir))

    def client_context(issued: Any | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(pki.server_ca.cert_path))
        if issued is not None:
            context.load_cert_chain(str(issued.cert_path), str(issued.key_path))
        return context

    def call(tenant: str, issued: Any | None) -> int | str:
        with Client(server.url, api_key=server.tenants[tenant]["api_key"], verify=client_context(issued)) as c:
            try:
                return "ok" if c.infer("echo", b"mtls") == b"mtls" else "wrong"
            except ClientError as exc:
                return exc.code

    assert call("bound", pki.client_a) == "ok"
    assert call("bound", pki.client_b) == "client_identity_mismatch"
    assert call("bound", None) == "client_certificate_required"
    assert call("free", None) == "ok"
