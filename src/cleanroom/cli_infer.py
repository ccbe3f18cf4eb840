"""`cleanroom infer`, and the checks of the client flags it shares with `cleanroom batch` (`--url`,
`--api-key`, `--public-key`): each refused as a usage error (exit 2) before stdin is read.

Its own module because it is the command that acts as a tenant, not as the operator: it holds an API key
and seals a payload, and never touches a data dir.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def cmd_infer(args: argparse.Namespace) -> int:
    from cleanroom.client import Client

    if args.cacert and not Path(args.cacert).exists():
        print(f"cleanroom: --cacert {args.cacert}: no such file", file=sys.stderr)
        return 2
    verify: Any = args.cacert if args.cacert else True
    check_url_arg(args.url)
    check_api_key_arg(args.api_key)
    public_key = public_key_arg(args.public_key)
    try:  # an unusable --cacert (not PEM) or --pin is a usage error, found before stdin is read
        client = Client(args.url, api_key=args.api_key, public_key=public_key, verify=verify, pin=args.pin)
    except ValueError as exc:
        print(f"cleanroom: {exc}", file=sys.stderr)
        return 2
    payload = sys.stdin.buffer.read()
    with client:
        result = client.infer(args.model, payload)
    sys.stdout.buffer.write(result)
    sys.stdout.buffer.flush()
    return 0


def check_url_arg(value: str) -> None:
    """`--url`: an http(s) URL with a host, refused as a usage error (exit 2) before stdin is read, not
    reported as an unreachable server."""
    import httpx

    try:
        url = httpx.URL(value)
        usable = url.scheme in ("http", "https") and bool(url.host)
    except (httpx.InvalidURL, TypeError, ValueError):
        usable = False
    if not usable:
        print(f"cleanroom: --url {value!r} is not an http(s) URL such as https://127.0.0.1:8443", file=sys.stderr)
        raise SystemExit(2)


def check_api_key_arg(value: str) -> None:
    """An empty `--api-key` (an unset shell variable) or one with whitespace cannot go in a header; httpx
    would refuse it only after connecting, as an 'Illegal header value' that reads like a network fault."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        print("cleanroom: --api-key is empty or holds whitespace: give the tenant's API key (cr_...)", file=sys.stderr)
        raise SystemExit(2)


def public_key_arg(value: str | None) -> Any:
    """`--public-key`: a token, or a file holding one (or `tenant create --json` output); a clear exit 2
    for anything else, rather than a parser's message about whatever the path's text happened to be."""
    if value is None:
        return None
    from cleanroom.client import load_public_key

    try:
        return load_public_key(value)
    except (OSError, ValueError, KeyError, TypeError):
        what = (
            "not a valid public-key token"
            if value.startswith("cleanroom-pk:")
            else "no such file"
            if not Path(value).exists()
            else "the file holds no public-key token"
        )
        print(
            f"cleanroom: --public-key {value}: {what}; give a public-key token (cleanroom-pk:v1:...) or a file "
            "holding one, such as the output of `cleanroom tenant create --json`",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    infer = sub.add_parser("infer", help="seal stdin, send it to MODEL, write the answer to stdout")
    infer.add_argument("model")
    infer.add_argument("--url", required=True, help="the server, e.g. https://127.0.0.1:8443")
    infer.add_argument("--api-key", required=True, help="the tenant's API key (cr_...)")
    infer.add_argument("--public-key", default=None, help="public-key token or file (pins the key)")
    infer.add_argument(
        "--pin", default=None, help="SHA-256 fingerprint of the tenant key to accept (see tenant create)"
    )
    infer.add_argument("--cacert", default=None, help="CA certificate to trust (e.g. DATA_DIR/tls/dev-cert.pem)")
    infer.set_defaults(func=cmd_infer)
