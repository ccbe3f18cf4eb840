"""The baseline: the same models behind a bare FastAPI endpoint, no sealing, no hardening.

    python benchmarks/bare_server.py PORT

Two routes, so that the comparison can be made like with like:
- `POST /{model}` runs the model on a worker thread (`anyio.to_thread`, what a FastAPI `def` route does),
  as the sealed server does: inference must not block the event loop (issue 2);
- `POST /inline/{model}` runs it on the event loop itself: the cheapest possible endpoint, which serves one
  request at a time. Reported too, as the strictest baseline.
uvicorn's defaults (httptools, uvloop when installed) as in `cleanroom serve`; access log off (`--access-log`
turns it on: `cleanroom serve` writes one redacted access line per request).
"""

from __future__ import annotations

import sys

import anyio
import uvicorn
from fastapi import FastAPI, Request, Response

from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.models import EchoModel, MiniLMModel, RequestScope
from cleanroom.runtime.session import zero_scope

app = FastAPI()
allocator = SecureAllocator(lock=False)
MODELS = {"echo": EchoModel(), "minilm": MiniLMModel()}


def run_model(model: str, body: bytes) -> bytes:
    scope = RequestScope(allocator)
    payload = scope.new_buffer(len(body))
    payload.view()[:] = body
    try:
        return bytes(MODELS[model].run(payload, scope))
    finally:
        zero_scope(scope)


@app.post("/inline/{model}")
async def run_inline(model: str, request: Request) -> Response:
    return Response(run_model(model, await request.body()))


@app.post("/{model}")
async def run(model: str, request: Request) -> Response:
    body = await request.body()
    return Response(await anyio.to_thread.run_sync(run_model, model, body))


if __name__ == "__main__":
    access_log = "--access-log" in sys.argv[2:]
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="info" if access_log else "warning",
        access_log=access_log,
    )
