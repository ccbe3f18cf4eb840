"""Tenant affinity inside one Ray Serve replica: who runs next on the device, and which tenants' keys
the replica holds. Kept apart from the deployment glue (`ray_serve`) because both are pure policy: no Ray,
no HTTP, testable on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cleanroom.keys.keyring import Keyring


class TenantTurns:
    """One request at a time on the replica's device, ordered so that tenants switch rarely.

    When the device frees up, a queued request of the tenant already on it goes next, at most
    `max_consecutive` in a row while another tenant waits (no tenant starves); otherwise the
    longest-waiting request goes. Event-loop only (not thread-safe), like the replica that owns it.
    """

    def __init__(self, max_consecutive: int = 8) -> None:
        if max_consecutive < 1:
            raise ValueError("max_consecutive must be at least 1")
        self.max_consecutive = max_consecutive
        self._waiting: deque[tuple[str, asyncio.Future[None]]] = deque()
        self._busy = False
        self._current: str | None = None
        self._streak = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def turn(self, tenant_id: str) -> AsyncIterator[None]:
        if self._busy or self._waiting:
            entry = (tenant_id, asyncio.get_running_loop().create_future())
            self._waiting.append(entry)
            try:
                await entry[1]
            except asyncio.CancelledError:
                if entry[1].done() and not entry[1].cancelled():
                    self._pass_on()  # granted, then cancelled before it ran: the next one goes
                else:
                    self._waiting.remove(entry)
                raise
        else:
            self._busy = True
        if tenant_id == self._current:
            self._streak += 1
        else:
            self._current, self._streak = tenant_id, 1
        try:
            yield
        finally:
            self._pass_on()

    def _pass_on(self) -> None:
        if not self._waiting:
            self._busy = False
            return
        if self._streak < self.max_consecutive:
            chosen = next((e for e in self._waiting if e[0] == self._current), self._waiting[0])
        else:
            chosen = next((e for e in self._waiting if e[0] != self._current), self._waiting[0])
        self._waiting.remove(chosen)
        chosen[1].set_result(None)  # `_busy` stays set: the turn is handed over, not released


class TenantSlot:
    """A tenant "loaded" on a replica (Serve's multiplexed model): its HPKE key unwrapped and cached.

    Serve calls `__del__` when it evicts the slot (LRU, beyond `tenants_per_replica`); that purges the
    tenant's cached keys from this replica at once instead of at the cache TTL.
    """

    def __init__(self, tenant_id: str, keyring: Keyring, on_release: Any = None) -> None:
        self.tenant_id = tenant_id
        self._keyring = keyring
        self._on_release = on_release
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self._keyring.purge(self.tenant_id)
        if self._on_release is not None:
            self._on_release(self.tenant_id)

    def __del__(self) -> None:
        self.release()
