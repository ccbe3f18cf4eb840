"""Bearer-token authentication for tenant routes (API keys) and admin routes (the admin token)."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from cleanroom.errors import BadRequest, Unauthenticated
from cleanroom.tenants import Principal, TenantService


def single_header(request: Request, name: str) -> str | None:
    """The one value of a header that must appear at most once (RFC 9110 §5.3). Two Authorization (or
    Content-Type) headers are refused, not resolved: a proxy in front may act on the other one."""
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"send one {name.title()} header, not {len(values)}", code="duplicate_header")
    return values[0] if values else None


def bearer_token(request: Request) -> str:
    header = single_header(request, "authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the API key as `Authorization: Bearer cr_...`")
    return token.strip()


def authenticate_tenant(request: Request, tenants: TenantService, source: str) -> Principal:
    return tenants.authenticate(bearer_token(request), source=source)


def require_admin(request: Request, admin_token: str) -> None:
    if not hmac.compare_digest(bearer_token(request).encode(), admin_token.encode()):
        raise Unauthenticated("admin routes take the token in DATA_DIR/admin.token", code="bad_admin_token")
