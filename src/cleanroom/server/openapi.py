"""The published OpenAPI schema of the public routes (docs/openapi.json), generated from the app.

FastAPI's automatic schema cannot see what the sealed routes take — they read the raw body so it is never
parsed, copied or logged — and documents a validation-error shape we do not return. This module takes the
generated schema, keeps the public routes (the admin API is for the local CLI and stays out), and overlays
what the code cannot say: the sealed content type on the way in and out, bearer authentication, the one
error body every failure uses, and the statuses each route can answer, including those the transport
layer (`limits.py`) answers before a request reaches a route.

    python -m cleanroom.server.openapi docs/openapi.json    # regenerate after changing a public route
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from cleanroom.crypto.sealed import CONTENT_TYPE

ADMIN_PREFIX = "/v1/admin/"
ERROR_REF = {"$ref": "#/components/schemas/Error"}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error, from every route and from the transport layer.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable machine-readable code, e.g. decryption_failed"},
                "message": {"type": "string", "description": "for humans; never contains key material or payload"},
            },
        }
    },
}
SEALED_BODY: dict[str, Any] = {"type": "string", "format": "binary"}
PUBLIC_KEY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tenant_id", "key_id", "public_key", "fingerprint", "suite", "chain"],
    "properties": {
        "tenant_id": {"type": "string"},
        "key_id": {"type": "string"},
        "public_key": {"type": "string", "description": "token to seal requests to (docs/wire-format.md)"},
        "fingerprint": {"type": "string", "description": "SHA-256 fingerprint, for pinning"},
        "suite": {"type": "string", "description": "HPKE suite, DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM"},
        "chain": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key_id", "public_key", "endorsed_by", "endorsement", "expires_at"],
                "properties": {
                    "key_id": {"type": "string"},
                    "public_key": {"type": "string", "description": "the key's token"},
                    "endorsed_by": {"type": ["string", "null"], "description": "key_id that signed it; null first"},
                    "endorsement": {"type": ["string", "null"], "description": "base64 DER ECDSA P-384 signature"},
                    "expires_at": {"type": ["number", "null"], "description": "unix seconds, null if none"},
                },
            },
            "description": "every key the tenant's record holds, expired ones included, each with the "
            "endorsement by its predecessor: a pinned client walks it to follow rotations (docs/wire-format.md)",
        },
    },
}

_STATUS_TEXT = {
    400: "Malformed request or sealed message (bad framing, failed authentication tag, replay, stale, "
    "context mismatch)",
    401: "Missing, malformed, unknown, revoked or expired API key",
    403: "Tenant revoked, address not allowed, or client certificate missing or not bound to the tenant",
    404: "Unknown model",
    408: "Request head or body did not arrive in time, or the model did not answer in time",
    413: "Request body larger than the server's limit",
    415: f"Content-Type is not {CONTENT_TYPE}",
    422: "The request decrypted but its payload is not what the model takes",
    429: "Tenant over its share; retry after Retry-After seconds",
    431: "Request line and headers larger than the server's limit",
    503: "KMS or audit log unavailable, system sealed, or server at its connection/request limit; "
    "retry after Retry-After seconds",
}
TRANSPORT_STATUSES = (400, 408, 431, 503)  # limits.py may answer these on any route
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}

_INFER_DESCRIPTION = f"""Run MODEL on a sealed request and return a sealed response.

The body is a sealed request (`{CONTENT_TYPE}`; byte layout in docs/wire-format.md): the content key and
the request metadata sealed to the tenant's public key with HPKE (RFC 9180, DHKEM(P-384, HKDF-SHA384),
HKDF-SHA384, AES-256-GCM), then the payload under AES-256-GCM with that key. The tenant, model and
request id are bound as associated data, so a body moved to another tenant, model or request fails with
400 `decryption_failed` or `context_mismatch`. The 200 body is sealed to the client under a key derived
from the request's content key; only the client that sealed the request can open it.
"""

# (method, path) -> overlay: summary, description, request body, the JSON/sealed 200, error statuses
_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/models/{model}/infer"): {
        "summary": "Run a model on a sealed request",
        "description": _INFER_DESCRIPTION,
        "security": True,
        "request": {
            "required": True,
            "description": "a sealed request",
            "content": {CONTENT_TYPE: {"schema": SEALED_BODY}},
        },
        "ok": {"description": "a sealed response", "content": {CONTENT_TYPE: {"schema": SEALED_BODY}}},
        "errors": (400, 401, 403, 404, 408, 413, 415, 422, 429, 503),
    },
    ("get", "/v1/tenants/self/public-key"): {
        "summary": "The calling tenant's current public key",
        "security": True,
        "ok": {
            "description": "the key to seal requests to",
            "content": {"application/json": {"schema": PUBLIC_KEY_SCHEMA}},
        },
        "errors": (401, 403, 503),
    },
    ("get", "/healthz"): {
        "summary": "Liveness",
        "ok": {
            "description": "the process is serving",
            "content": {
                "application/json": {
                    "schema": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
                }
            },
        },
        "errors": (),
    },
    ("get", "/readyz"): {
        "summary": "Readiness and what this host guarantees (models, memory locking, hardening, device)",
        "ok": {
            "description": "ready",
            "content": {
                "application/json": {
                    "schema": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
                }
            },
        },
        "errors": (),
    },
    ("get", "/metrics"): {
        "summary": "Prometheus metrics (no tenant data in labels beyond the tenant id)",
        "ok": {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "errors": (),
    },
}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _STATUS_TEXT.get(status, "error"),
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


def _overlay(operation: dict[str, Any], spec: dict[str, Any]) -> None:
    operation["summary"] = spec["summary"]
    if "description" in spec:
        operation["description"] = spec["description"]
    if "request" in spec:
        operation["requestBody"] = spec["request"]
    responses: dict[str, Any] = {"200": spec["ok"]}
    for status in sorted({*spec["errors"], *TRANSPORT_STATUSES}):
        responses[str(status)] = _error_response(status)
    operation["responses"] = responses
    if spec.get("security"):
        operation["security"] = [{"bearerAuth": []}]


def build_schema(app: FastAPI, *, include_admin: bool = False) -> dict[str, Any]:
    """The app's schema with the overlay applied; deterministic, so it can be checked in and diffed."""
    schema = get_openapi(
        title="cleanroom",
        version=app.version,
        routes=app.routes,
        description="Secure multi-tenant inference: requests and responses are sealed end to "
        "end to the tenant's key; TLS 1.3 underneath.",
    )
    paths: dict[str, Any] = {}
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(ADMIN_PREFIX) and not include_admin:
            continue
        for method, operation in operations.items():
            spec = _OPERATIONS.get((method, path))
            if spec is not None:
                _overlay(operation, spec)
            else:  # a route without an overlay still gets the error body for what it can answer
                for status, response in list(operation.get("responses", {}).items()):
                    if status == "422":
                        operation["responses"][status] = _error_response(422)
                    elif status.startswith(("4", "5")):
                        response.setdefault("content", {"application/json": {"schema": ERROR_REF}})
                # Routes without an overlay (e.g. the batch routes) can answer every error of the sealed
                # path: document them all rather than let a client meet an undocumented status.
                for status in (400, 401, 403, 404, 409, 410, 413, 415, 422, 429, *TRANSPORT_STATUSES):
                    operation["responses"].setdefault(str(status), _error_response(status))
        paths[path] = operations
    schema["paths"] = paths
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)  # FastAPI's 422 shape; ours is `Error`
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    if not include_admin:
        referenced = json.dumps(paths)
        for name in [n for n in schemas if n != "Error" and f"#/components/schemas/{n}" not in referenced]:
            del schemas[name]
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "the tenant's API key, `cr_` + 36 characters"}
    }
    plain: dict[str, Any] = json.loads(json.dumps(schema, sort_keys=True))  # a plain, key-sorted copy
    return plain


def install_openapi(app: FastAPI) -> None:
    """Serve the overlaid public schema at /openapi.json instead of FastAPI's raw one."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cache:
            cache.update(build_schema(app))
        return cache

    app.openapi = openapi  # type: ignore[method-assign]


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def schema_of_a_fresh_app(include_admin: bool = False) -> dict[str, Any]:
    """Build the real app over throwaway services (a temp data dir, the local KMS, the echo model)."""
    from cleanroom.config import Settings
    from cleanroom.server.app import create_app
    from cleanroom.server.services import build_services

    with tempfile.TemporaryDirectory(prefix="cleanroom-openapi-") as tmp:
        services = build_services(Settings(data_dir=Path(tmp), models=["echo"]))
        try:
            return build_schema(create_app(services), include_admin=include_admin)
        finally:
            services.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the public OpenAPI schema")
    parser.add_argument("out", nargs="?", default="-", help="file to write (default: stdout)")
    parser.add_argument("--include-admin", action="store_true")
    args = parser.parse_args(argv)
    text = render(schema_of_a_fresh_app(include_admin=args.include_admin))
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
