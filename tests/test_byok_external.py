"""Bring your own key from the customer's *own* KMS: a second, real OpenBao server that only the customer
controls. cleanroom holds a token the customer issued (policy: encrypt/decrypt on one key), stored wrapped by
our master key; the customer cuts us off by revoking that token, and an outage of their server is a 503 for
that tenant only, healing by itself."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cleanroom.client import ClientError
from services import OpenBao
from support.server import ServerHandle, server_env, start_server

CUSTOMER_KEY = "acme-own-key"
POLICY = f"""
path "transit/encrypt/{CUSTOMER_KEY}" {{ capabilities = ["update"] }}
path "transit/decrypt/{CUSTOMER_KEY}" {{ capabilities = ["update"] }}
path "transit/keys/{CUSTOMER_KEY}" {{ capabilities = ["read"] }}
"""


def issue_token(bao: OpenBao) -> str:
    """What the customer does for us: a token that may only use its one key."""
    bao._http("PUT", "sys/policies/acl/cleanroom-byok", {"policy": POLICY}, token=bao.root_token)
    created = bao._http(
        "POST",
        "auth/token/create",
        {"policies": ["cleanroom-byok"], "ttl": "1h", "no_default_policy": True},
        token=bao.root_token,
    )
    return str(created["auth"]["client_token"])


def refused(client: object, code: str, status: int) -> ClientError:
    with pytest.raises(ClientError) as caught:
        client.infer("echo", b"must not open")  # type: ignore[attr-defined]
    assert (caught.value.status, caught.value.code) == (status, code), caught.value
    return caught.value


def byok(server: ServerHandle, token_file: Path, addr: str, key: str = CUSTOMER_KEY, check: bool = True) -> object:
    return server.cli(
        "keys",
        "byok",
        "--tenant",
        "acme",
        "--vault-addr",
        addr,
        "--vault-key",
        key,
        "--vault-token-file",
        str(token_file),
        "--data-dir",
        str(server.data_dir),
        "--json",
        check=check,
    )


def test_customer_vault_layer_revocation_outage_and_rotation(tmp_path: Path) -> None:
    bao = OpenBao(tmp_path / "customer-bao")
    bao.start()
    # The customer's key is an ordinary (not derived) Transit key: our context goes in as associated data.
    bao._http("POST", f"transit/keys/{CUSTOMER_KEY}", {"type": "aes256-gcm96"}, token=bao.root_token)
    token = issue_token(bao)
    token_file = tmp_path / "customer-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    server = start_server(
        tmp_path / "data", "--models", "echo", tls=False, env=server_env(CLEANROOM_KEY_CACHE_TTL_S="1")
    )
    data = str(server.data_dir)
    registry = server.data_dir / "tenants.json"
    try:
        server.create_tenant("acme")
        server.create_tenant("other")
        acme, other = server.client("acme"), server.client("other")
        assert acme.infer("echo", b"before byok") == b"before byok"

        # Bad specs change nothing: wrong key name, wrong token, unreachable server.
        before = registry.read_bytes()
        bad_token = tmp_path / "bad-token"
        bad_token.write_text("s.not-a-real-token")
        for result in (
            byok(server, token_file, bao.addr, key="no-such-key", check=False),
            byok(server, bad_token, bao.addr, check=False),
            byok(server, token_file, "http://127.0.0.1:9", check=False),
        ):
            assert result.returncode != 0  # type: ignore[attr-defined]
            assert b"invalid_byok_key" in result.stderr + result.stdout, result  # type: ignore[attr-defined]
        assert registry.read_bytes() == before
        assert acme.infer("echo", b"still fine") == b"still fine"

        out = byok(server, token_file, bao.addr)
        answer = json.loads(out.stdout)  # type: ignore[attr-defined]
        assert answer["byok_key"]["addr"] == bao.addr and "token" not in answer["byok_key"]
        assert acme.infer("echo", b"double wrapped") == b"double wrapped"
        stored = json.loads(registry.read_text())
        acme_record = next(t for t in stored["tenants"].values() if t["name"] == "acme")
        assert acme_record["tenant_keys"]["byok_key"]["kind"] == "vault"
        status = server.cli("keys", "status", "--json", "--data-dir", data).stdout
        assert CUSTOMER_KEY.encode() in status
        for where in (registry.read_bytes(), out.stdout, status, server.log_path.read_bytes()):  # type: ignore[attr-defined]
            assert token.encode() not in where  # the credential exists only wrapped by our master key

        # The customer rotates its key; we rotate the tenant key and the master key: all keep working.
        bao._http("POST", f"transit/keys/{CUSTOMER_KEY}/rotate", {}, token=bao.root_token)
        time.sleep(1.2)
        assert acme.infer("echo", b"customer rotated") == b"customer rotated"
        server.cli("keys", "rotate", "--tenant", "acme", "--data-dir", data)
        server.cli("keys", "rotate", "--master", "--data-dir", data)
        time.sleep(1.2)
        assert acme.infer("echo", b"all rotated") == b"all rotated"

        # Outage of the customer's server: 503 for that tenant (after the cache TTL), nobody else; heals alone.
        bao.kill()
        time.sleep(1.2)
        error = refused(acme, "customer_kms_unavailable", 503)
        assert "own KMS" in str(error)
        assert other.infer("echo", b"unaffected") == b"unaffected"
        bao.start()
        deadline = time.monotonic() + 30  # a client honours Retry-After; the back-off window is 5 s
        while True:
            try:
                assert acme.infer("echo", b"customer back") == b"customer back"
                break
            except ClientError as exc:
                assert (exc.status, exc.code) == (503, "customer_kms_unavailable"), exc
                assert time.monotonic() < deadline, "service did not resume after the customer's KMS came back"
                time.sleep(1)

        # The customer revokes our token: 403 for that tenant, others unaffected.
        bao._http("POST", "auth/token/revoke", {"token": token}, token=bao.root_token)
        time.sleep(1.2)
        refused(acme, "customer_key_unavailable", 403)
        assert other.infer("echo", b"still unaffected") == b"still unaffected"
        assert server.healthy()

        # Access restored: the customer issues a new token; the operator installs it.
        token_file.write_text(issue_token(bao))
        byok(server, token_file, bao.addr)
        assert acme.infer("echo", b"restored") == b"restored"
        acme.close()
        other.close()
    finally:
        server.stop()
        bao.stop()
