"""Call the Ray Serve example: python examples/ray_serve/client.py URL TENANT_JSON TEXT

The `serve_multiplexed_model_id` header (the tenant id) routes the request to a replica that already
serves this tenant, so replicas switch tenants, and scrub, as rarely as possible.
"""

from __future__ import annotations

import json
import sys

import httpx

from cleanroom.client import Client
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.integrations.ray_serve import routing_headers


def main(url: str, tenant_json: str, text: str) -> None:
    with open(tenant_json, encoding="utf-8") as f:
        tenant = json.load(f)
    with Client(url, api_key=tenant["api_key"], public_key=tenant["public_key"]) as client:
        sealed = client.seal_request("echo", text.encode())
        response = httpx.post(
            f"{url}/v1/models/echo/infer",
            content=sealed.body,
            timeout=60,
            headers={
                "Content-Type": CONTENT_TYPE,
                "Authorization": f"Bearer {tenant['api_key']}",
                **routing_headers(tenant["tenant_id"]),
            },
        )
        response.raise_for_status()
        print(sealed.open_response(response.content).decode())


if __name__ == "__main__":
    main(*sys.argv[1:4])
