"""The checked-in OpenAPI schema (docs/openapi.json) is the app's schema: a route change without a
regenerated schema fails here. Regenerate with `python -m cleanroom.server.openapi docs/openapi.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.server.openapi import ADMIN_PREFIX, render, schema_of_a_fresh_app

CHECKED_IN = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
REGENERATE = "python -m cleanroom.server.openapi docs/openapi.json"


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    return schema_of_a_fresh_app()


def test_checked_in_schema_matches_the_app(generated: dict[str, Any]) -> None:
    checked_in = CHECKED_IN.read_text()
    if render(generated) != checked_in:
        old, new = json.loads(checked_in), generated
        changed = sorted(p for p in {*old["paths"], *new["paths"]} if old["paths"].get(p) != new["paths"].get(p))
        pytest.fail(
            f"docs/openapi.json drifted from the app (paths: {changed or 'components/info'}); "
            f"run `{REGENERATE}` and review the diff"
        )


def test_every_public_route_is_documented(generated: dict[str, Any]) -> None:
    import tempfile

    from fastapi.routing import APIRoute

    from cleanroom.config import Settings
    from cleanroom.server.app import create_app
    from cleanroom.server.services import build_services

    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(data_dir=Path(tmp), models=["echo"]))
        try:
            app = create_app(services)
        finally:
            services.close()
    # HEAD probes of /healthz and /readyz are deliberately left out of the schema (include_in_schema=False)
    routes = {
        (method.lower(), r.path)
        for r in app.routes
        if isinstance(r, APIRoute) and r.include_in_schema
        for method in r.methods
    }
    public = {(m, p) for m, p in routes if not p.startswith(ADMIN_PREFIX)}
    documented = {(m, p) for p, ops in generated["paths"].items() for m in ops}
    assert public == documented
    assert not any(p.startswith(ADMIN_PREFIX) for p in generated["paths"]), "the admin API is not public"


def test_sealed_route_documents_its_body_errors_and_auth(generated: dict[str, Any]) -> None:
    infer = generated["paths"]["/v1/models/{model}/infer"]["post"]
    assert infer["requestBody"]["required"] is True
    assert list(infer["requestBody"]["content"]) == [CONTENT_TYPE]
    assert list(infer["responses"]["200"]["content"]) == [CONTENT_TYPE]
    assert infer["security"] == [{"bearerAuth": []}]
    for status in ("400", "401", "403", "404", "408", "413", "415", "422", "429", "431", "503"):
        assert infer["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }, status
    assert "Retry-After" in infer["responses"]["429"]["headers"]
    error = generated["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    assert "HTTPValidationError" not in generated["components"]["schemas"]
    assert generated["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_every_error_response_uses_the_error_body(generated: dict[str, Any]) -> None:
    for path, operations in generated["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
