"""cleanroom behind vLLM's OpenAI-compatible server, through `--middleware`.

    cleanroom tenant create shop --data-dir ./cleanroom-data --json > shop.json
    CLEANROOM_DATA_DIR=./cleanroom-data cleanroom exec -- \\
        vllm serve Qwen/Qwen2.5-0.5B-Instruct --host 127.0.0.1 --port 8000 --no-enable-prefix-caching \\
        --middleware examples.vllm.cleanroom_vllm.VLLMCleanroomMiddleware
    python examples/vllm/client.py http://127.0.0.1:8000 shop.json "Summarise: ..."

vLLM calls `app.add_middleware(cls)` with no arguments, so this subclass fixes its configuration: the data
dir from $CLEANROOM_DATA_DIR, and every route sealed except the probes (health, metrics, version). Sealing
by default matters: a list of vLLM's prompt-carrying routes missed `/v2/rerank` (Cohere's API), which then
took plaintext from anyone, and would miss whatever route vLLM adds next. Streaming (`"stream": true`)
still works but arrives as one sealed message.
"""

from __future__ import annotations

from typing import Any

from cleanroom.integrations.asgi import CleanroomMiddleware

# The only routes left open: probes, which carry no tenant data. Everything else is sealed.
OPEN_PATHS = ("/health", "/metrics", "/version")


class VLLMCleanroomMiddleware(CleanroomMiddleware):
    def __init__(self, app: Any) -> None:
        super().__init__(app, protected_paths=("/",), open_paths=OPEN_PATHS)
