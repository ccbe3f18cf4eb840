"""Who may call from where: client address resolution behind proxies, and per-tenant IP allowlists.

The client address is the TCP peer, unless the peer is one of the configured trusted proxies: then it is
the right-most address in the forwarding header that is not itself a trusted proxy (the left part of
X-Forwarded-For is whatever the client wrote, so it is never trusted). Allowlists are CIDR lists per
tenant (IPv4 and IPv6); an empty list allows every address. They are enforced right after the API key
resolves the tenant, before anything is decrypted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from cleanroom.errors import BadRequest, Forbidden

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressNotAllowed(Forbidden):
    code = "address_not_allowed"


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    """CIDRs (or single addresses) to networks; a clear 400 for anything malformed."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise BadRequest(f"{cidr!r} is not an IPv4 or IPv6 address or CIDR block", code="invalid_cidr") from None
    return networks


def normalize_cidrs(cidrs: Iterable[str]) -> list[str]:
    return [str(n) for n in parse_networks(cidrs)]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 for allowlists
    return address


class ClientAddressResolver:
    """The address a request really comes from, honouring only trusted proxies."""

    def __init__(self, trusted_proxies: Sequence[str] = (), header: str = "x-forwarded-for") -> None:
        self.trusted = parse_networks(trusted_proxies)
        self.header = header.lower()

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self.trusted)

    def resolve(self, peer: str, header_value: str | None) -> str:
        peer_address = _address(peer)
        if not header_value or not self._is_trusted(peer_address):
            return str(peer_address) if peer_address is not None else peer
        for hop in reversed([h for h in header_value.split(",") if h.strip()]):
            address = _address(hop)
            if address is None:
                break  # a garbled hop: stop at the last address we could trust
            if not self._is_trusted(address):
                return str(address)
        return str(peer_address)


def check_allowed(allow: Sequence[str], address: str, tenant_name: str) -> None:
    """Raise AddressNotAllowed unless `address` is in one of the tenant's `allow` networks (empty = all)."""
    if not allow:
        return
    parsed = _address(address)
    if parsed is None or not any(parsed in network for network in parse_networks(allow)):
        raise AddressNotAllowed(f"tenant {tenant_name!r} does not accept requests from this address")
