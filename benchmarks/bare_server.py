"""The baseline: the same models behind a bare FastAPI endpoint, no sealing, no hardening.

    python benchmarks/bare_server.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request, Response

from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.models import EchoModel, MiniLMModel, RequestScope
from cleanroom.runtime.session import zero_scope

app = FastAPI()
allocator = SecureAllocator(lock=False)
MODELS = {"echo": EchoModel(), "minilm": MiniLMModel()}


@app.post("/{model}")
async def run(model: str, request: Request) -> Response:
    body = await request.body()
    scope = RequestScope(allocator)
    payload = scope.new_buffer(len(body))
    payload.view()[:] = body
    try:
        return Response(bytes(MODELS[model].run(payload, scope)))
    finally:
        zero_scope(scope)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
