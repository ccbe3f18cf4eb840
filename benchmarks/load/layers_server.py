"""A FastAPI echo endpoint served either by stock uvicorn or with cleanroom's transport layers (hardened
protocol: limits, timeouts, TLS extension; security headers; disconnect guard), for `run.py layers`.

    .venv/bin/python benchmarks/load/layers_server.py PORT plain|hardened [CERT KEY]

With CERT and KEY (PEM files) it serves TLS 1.3 as `cleanroom serve` does. It serves until terminated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int, help="port on 127.0.0.1")
    parser.add_argument("mode", choices=["plain", "hardened"], help="stock uvicorn, or cleanroom's transport layers")
    parser.add_argument("cert", nargs="?", type=Path, help="TLS certificate (PEM); with KEY: serve TLS")
    parser.add_argument("key", nargs="?", type=Path, help="TLS private key (PEM)")
    args = parser.parse_args()
    if (args.cert is None) != (args.key is None):
        parser.error("CERT and KEY go together")
    port, mode = args.port, args.mode
    context = None
    if args.cert is not None:
        from cleanroom.server.tls import server_tls_context

        context = server_tls_context(args.cert, args.key)
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
