"""Call the Triton example: python examples/triton/client.py URL TENANT_JSON TEXT

One sealed request travels as the only element of the BYTES input `SEALED_REQUEST` (KServe v2 binary
tensor extension), the API key as the request parameter `cleanroom_api_key`.
"""

from __future__ import annotations

import json
import sys

import httpx

from cleanroom.client import Client
from cleanroom.integrations.triton import decode_infer_response, encode_infer_request


def main(url: str, tenant_json: str, text: str, model: str = "echo") -> None:
    with open(tenant_json, encoding="utf-8") as f:
        tenant = json.load(f)
    with Client(url, api_key=tenant["api_key"], public_key=tenant["public_key"]) as client:
        sealed = client.seal_request(model, text.encode())
        body, headers = encode_infer_request(sealed.body, tenant["api_key"])
        response = httpx.post(f"{url}/v2/models/{model}/infer", content=body, headers=headers, timeout=60)
        if response.status_code != 200:
            raise SystemExit(f"{response.status_code}: {response.text}")
        print(sealed.open_response(decode_infer_response(response.content, response.headers)).decode())


if __name__ == "__main__":
    main(*sys.argv[1:4])
