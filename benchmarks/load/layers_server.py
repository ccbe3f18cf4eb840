"""A FastAPI echo endpoint served either by stock uvicorn or with cleanroom's transport layers (hardened
protocol: limits, timeouts, TLS extension; security headers; disconnect guard), for `run.py layers`.

    python benchmarks/load/layers_server.py PORT plain|hardened [CERT KEY]
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body())


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]
    context = None
    if len(sys.argv) > 4:
        from cleanroom.server.tls import server_tls_context

        context = server_tls_context(Path(sys.argv[3]), Path(sys.argv[4]))
    factory = (lambda _config, _default: context) if context is not None else None
    if mode == "hardened":
        from cleanroom.server.limits import ConnectionLimits, harden_asgi, hardened_protocol

        config = uvicorn.Config(
            harden_asgi(app),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            http=hardened_protocol(ConnectionLimits()),
            ssl_context_factory=factory,
            server_header=False,
        )
    else:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", http="httptools", ssl_context_factory=factory
        )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
