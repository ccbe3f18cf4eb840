"""Client certificates (mTLS): who the verified peer is, and binding that identity to a tenant.

The listener verifies the chain (see `tls.server_tls_context`); the HTTP protocol then publishes the
verified leaf in the request scope as the ASGI TLS extension (`scope["extensions"]["tls"]`, with
`client_cert_chain` and `client_cert_name` as the ASGI spec names them). A tenant may carry a list of
bound identities in its record (`client_identities`); when it does, a request for that tenant must come
over a connection whose verified certificate has one of them — an API key alone is then not enough.

Identities are strings, one per name in the certificate:
    `subject:<RFC 4514 subject>`  `dns:<name>`  `uri:<uri>`  `email:<address>`  `ip:<address>`
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from cleanroom.errors import BadRequest, Forbidden
from cleanroom.keys.registry import Document, Registry

IDENTITY_FIELD = "client_identities"
_IDENTITY_KINDS = ("subject", "dns", "uri", "email", "ip")


class ClientCertificateRequired(Forbidden):
    code = "client_certificate_required"


class ClientIdentityMismatch(Forbidden):
    code = "client_identity_mismatch"


def certificate_identities(der: bytes) -> list[str]:
    """Every identity a (verified) certificate carries: its subject and its subjectAltName entries."""
    cert = x509.load_der_x509_certificate(der)
    identities = [f"subject:{cert.subject.rfc4514_string()}"]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return identities
    identities += [f"dns:{name.lower()}" for name in san.get_values_for_type(x509.DNSName)]
    identities += [f"uri:{uri}" for uri in san.get_values_for_type(x509.UniformResourceIdentifier)]
    identities += [f"email:{mail.lower()}" for mail in san.get_values_for_type(x509.RFC822Name)]
    identities += [f"ip:{address}" for address in san.get_values_for_type(x509.IPAddress)]
    return identities


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any] | None:
    """The ASGI TLS extension for one connection; the client certificate only when it was verified.

    `getpeercert(binary_form=True)` returns the leaf only when the handshake verified it against the
    client CA (the context's verify_mode is not CERT_NONE); with CERT_NONE Python never asks for one.
    """
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object.context.verify_mode != ssl.CERT_NONE else None
    cipher = ssl_object.cipher()
    extension: dict[str, Any] = {
        "server_cert": None,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": 0x0304 if ssl_object.version() == "TLSv1.3" else None,
        "cipher_suite": None,
        "cleanroom_cipher": cipher[0] if cipher else None,
        "cleanroom_client_identities": [],
    }
    if der:
        cert = x509.load_der_x509_certificate(der)
        extension["client_cert_chain"] = [ssl.DER_cert_to_PEM_cert(der)]
        extension["client_cert_name"] = cert.subject.rfc4514_string()
        extension["cleanroom_client_identities"] = certificate_identities(der)
    return extension


def verified_identities(scope: Mapping[str, Any]) -> list[str]:
    tls = (scope.get("extensions") or {}).get("tls") or {}
    return list(tls.get("cleanroom_client_identities") or [])


def normalize_identity(identity: str) -> str:
    kind, sep, value = identity.partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if not sep or kind not in _IDENTITY_KINDS or not value or len(value) > 1024:
        raise BadRequest(
            f"client identities look like {', '.join(k + ':...' for k in _IDENTITY_KINDS)}",
            code="invalid_client_identity",
        )
    if kind == "subject":
        value = x509.Name.from_rfc4514_string(value).rfc4514_string()  # one spelling for matching
    elif kind == "ip":
        value = str(ipaddress.ip_address(value))
    elif kind in ("dns", "email"):
        value = value.lower()
    return f"{kind}:{value}"


def bind_client_identity(registry: Registry, name_or_id: str, identity: str) -> list[str]:
    """Add `identity` to the tenant's bound client identities; returns the new list."""
    normalized = normalize_identity(identity)
    tenant_id = registry.tenant(name_or_id)["tenant_id"]

    def add(doc: Document) -> list[str]:
        bound: list[str] = doc["tenants"][tenant_id].setdefault(IDENTITY_FIELD, [])
        if normalized not in bound:
            bound.append(normalized)
        return list(bound)

    result: list[str] = registry.update(add)
    return result


def unbind_client_identity(registry: Registry, name_or_id: str, identity: str | None = None) -> list[str]:
    """Remove one bound identity, or all of them with `identity=None`; returns what is left."""
    tenant_id = registry.tenant(name_or_id)["tenant_id"]
    target = normalize_identity(identity) if identity is not None else None

    def remove(doc: Document) -> list[str]:
        record = doc["tenants"][tenant_id]
        left = [] if target is None else [i for i in record.get(IDENTITY_FIELD, []) if i != target]
        record[IDENTITY_FIELD] = left
        return left

    result: list[str] = registry.update(remove)
    return result


def check_client_identity(request: Any, tenant_record: Mapping[str, Any]) -> None:
    """Refuse the request unless its verified client certificate matches the tenant's bound identities.

    Call it right after the API key resolved the tenant and before anything is decrypted. A tenant with
    no bound identities is not constrained (API key only). `request` is a Starlette Request or anything
    with an ASGI `scope`.
    """
    bound = tenant_record.get(IDENTITY_FIELD) or []
    if not bound:
        return
    presented = verified_identities(request.scope)
    if not presented:
        raise ClientCertificateRequired(
            f"tenant {tenant_record.get('name', '')!r} requires a client certificate bound to it"
        )
    if not set(presented) & set(bound):
        raise ClientIdentityMismatch(f"the client certificate is not bound to tenant {tenant_record.get('name', '')!r}")


# --- CLI: `cleanroom client-cert bind|unbind|list` -------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`cleanroom client-cert ...`: bind verified client-certificate identities to tenants.

    Writes the tenant registry directly (under its file lock); a server running on the same data dir picks
    the change up on its next request, as it does for other registry changes.
    """
    group = subparsers.add_parser("client-cert", help="bind client-certificate identities to tenants (mTLS)")
    commands = group.add_subparsers(dest="client_cert_command", required=True)
    bind = commands.add_parser("bind", help="require this certificate identity for the tenant")
    bind.add_argument("tenant")
    bind.add_argument("identity", help="subject:CN=..., dns:NAME, uri:URI, email:ADDR or ip:ADDR")
    unbind = commands.add_parser("unbind", help="remove one identity, or all with --all")
    unbind.add_argument("tenant")
    unbind.add_argument("identity", nargs="?")
    unbind.add_argument("--all", action="store_true")
    show = commands.add_parser("list", help="identities bound to the tenant")
    show.add_argument("tenant")
    for parser in (bind, unbind, show):
        parser.add_argument("--data-dir", type=Path, default=None)
        parser.set_defaults(func=_client_cert_command)


def _client_cert_command(args: argparse.Namespace) -> int:
    from cleanroom.config import Settings

    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir is not None else {}))
    registry = Registry(Path(settings.data_dir))
    if args.client_cert_command == "bind":
        bound = bind_client_identity(registry, args.tenant, args.identity)
    elif args.client_cert_command == "unbind":
        if args.identity is None and not args.all:
            raise BadRequest("name the identity to unbind, or pass --all", code="invalid_client_identity")
        bound = unbind_client_identity(registry, args.tenant, None if args.all else args.identity)
    else:
        bound = list(registry.tenant(args.tenant).get(IDENTITY_FIELD) or [])
    print(json.dumps({"tenant": args.tenant, "client_identities": bound}))
    return 0
