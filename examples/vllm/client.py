"""Call vLLM behind cleanroom: python examples/vllm/client.py URL TENANT_JSON PROMPT [MODEL]

The body is vLLM's ordinary OpenAI-style JSON; only its transport changes (`Client.call` seals it).
"""

from __future__ import annotations

import json
import sys

from cleanroom.client import Client


def main(url: str, tenant_json: str, prompt: str, model: str = "Qwen/Qwen2.5-0.5B-Instruct") -> None:
    with open(tenant_json, encoding="utf-8") as f:
        tenant = json.load(f)
    request = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 128}
    with Client(url, api_key=tenant["api_key"], public_key=tenant["public_key"]) as client:
        answer = json.loads(client.call("/v1/chat/completions", json.dumps(request).encode()))
    print(answer["choices"][0]["message"]["content"])


if __name__ == "__main__":
    main(*sys.argv[1:5])
