"""Call the example app: python examples/fastapi_app/client.py URL TENANT_JSON TEXT"""

from __future__ import annotations

import json
import sys

from cleanroom.client import Client


def main(url: str, tenant_json: str, text: str) -> None:
    with open(tenant_json, encoding="utf-8") as f:
        tenant = json.load(f)
    with Client(url, api_key=tenant["api_key"], public_key=tenant["public_key"]) as client:
        print(client.call("/v1/sentiment", json.dumps({"text": text}).encode()).decode())


if __name__ == "__main__":
    main(*sys.argv[1:4])
