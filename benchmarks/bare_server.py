"""The baseline: the same models behind a bare FastAPI endpoint, no sealing, no hardening.

    .venv/bin/python benchmarks/bare_server.py PORT [--models echo,minilm] [--access-log]

Two routes, so that the comparison can be made like with like:
- `POST /{model}` runs the model on a worker thread (`anyio.to_thread`, what a FastAPI `def` route does),
  as the sealed server does: inference must not block the event loop (issue 2);
- `POST /inline/{model}` runs it on the event loop itself: the cheapest possible endpoint, which serves one
  request at a time. Reported too, as the strictest baseline.
uvicorn's defaults (httptools, uvloop when installed) as in `cleanroom serve`; access log off (`--access-log`
turns it on: `cleanroom serve` writes one redacted access line per request). Started by
`benchmarks/request_path.py` and `benchmarks/load/run.py compare`; it serves until terminated.
"""

from __future__ import annotations

import argparse

import anyio
import uvicorn
from fastapi import FastAPI, Request, Response

from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.models import EchoModel, Model, RequestScope
from cleanroom.runtime.session import zero_scope

app = FastAPI()
allocator = SecureAllocator(lock=False)
MODELS: dict[str, Model] = {}  # filled by main(): `minilm` loads weights, so only when asked for


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
    if model not in MODELS:
        return Response(status_code=404)
    return Response(run_model(model, await request.body()))


@app.post("/{model}")
async def run(model: str, request: Request) -> Response:
    if model not in MODELS:
        return Response(status_code=404)
    body = await request.body()
    return Response(await anyio.to_thread.run_sync(run_model, model, body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--models", default="echo,minilm", help="comma-separated: echo, minilm (default: both)")
    parser.add_argument("--access-log", action="store_true", help="one access line per request, as `serve` does")
    args = parser.parse_args()
    for name in (m.strip() for m in args.models.split(",") if m.strip()):
        if name == "echo":
            MODELS[name] = EchoModel()
        elif name == "minilm":
            from cleanroom.runtime.models import MiniLMModel

            MODELS[name] = MiniLMModel()
        else:
            parser.error(f"unknown model {name!r} (echo, minilm)")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="info" if args.access_log else "warning",
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
