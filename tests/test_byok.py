"""Bring your own key: the tenant's own Transit key wraps its tenant key too; disabling it cuts us off."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cleanroom.client import ClientError
from services import OpenBao
from support.server import server_env, start_server


def test_customer_key_layer_and_customer_revocation(tmp_path: Path) -> None:
    bao = OpenBao(tmp_path / "bao")
    bao.start()
    env = server_env(
        CLEANROOM_KMS="vault",
        CLEANROOM_VAULT_ADDR=bao.addr,
        CLEANROOM_VAULT_TOKEN=bao.root_token,
        CLEANROOM_KEY_CACHE_TTL_S="1",
    )
    server = start_server(tmp_path / "data", "--models", "echo", tls=False, env=env)
    data = str(server.data_dir)
    try:
        # The customer's own key, in a Transit engine cleanroom's token may use (here: the same server).
        from cleanroom.keys.vault import VaultTransitKMS

        customer = VaultTransitKMS(bao.addr, bao.root_token)
        customer.create_key("acme-own-key")
        server.create_tenant("acme")
        server.create_tenant("other")
        out = server.cli("keys", "byok", "--tenant", "acme", "--key", "acme-own-key", "--data-dir", data)
        assert json.loads(out.stdout)["byok_key"] == "acme-own-key"
        acme, other = server.client("acme"), server.client("other")
        assert acme.infer("echo", b"double wrapped") == b"double wrapped"
        record = json.loads((server.data_dir / "tenants.json").read_text())
        acme_record = next(t for t in record["tenants"].values() if t["name"] == "acme")
        assert acme_record["tenant_keys"]["byok_key"] == "acme-own-key"

        customer.disable("acme-own-key")  # the customer revokes cleanroom
        time.sleep(1.2)  # cached keys serve at most one TTL
        try:
            acme.infer("echo", b"x")
            raise AssertionError("a request opened after the customer disabled its key")
        except ClientError as exc:
            assert (exc.status, exc.code) == (403, "customer_key_unavailable")
        assert other.infer("echo", b"unaffected") == b"unaffected"

        customer.enable("acme-own-key")
        assert acme.infer("echo", b"back") == b"back"
        server.cli("keys", "rotate", "--tenant", "acme", "--data-dir", data)  # rotation keeps the layer
        time.sleep(1.2)
        assert acme.infer("echo", b"rotated") == b"rotated"
        acme.close()
        other.close()
        customer.close()
    finally:
        server.stop()
        bao.stop()
