"""The replay window: a sealed request is accepted once, and only near the time it says it was sealed.

Each request carries a random 128-bit id and a timestamp inside its HPKE-authenticated metadata. The server
refuses timestamps further than `window_s` from its clock, and remembers every accepted (tenant, id) for
2 x window_s, so a captured request can be replayed neither inside the window (seen) nor after it (stale).
This cache is one process's memory; `replay_shared.SharedReplayCache` extends it to every process that
serves a data dir (workers, replicas) and to restarts.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from cleanroom.errors import ReplayedRequest, ServiceUnavailable, StaleRequest


class ReplayCache:
    def __init__(self, window_s: float, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        self.window_s, self.max_entries, self._clock = window_s, max_entries, clock
        self._seen: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._mutex = threading.Lock()

    def check_and_remember(self, tenant_id: str, request_id: bytes, ts: int) -> None:
        now = self._clock()
        # Compared, not subtracted: `now - ts` with a float `now` overflows for |ts| >= 2**1024 (any int
        # fits in the metadata's JSON), and the comparison of a float with an int is exact in Python.
        if not now - self.window_s <= ts <= now + self.window_s:
            raise StaleRequest(
                f"request timestamp is more than {int(self.window_s)} s from the server clock; check the client's clock"
            )
        key = (tenant_id, request_id)
        with self._mutex:
            self._expire(now)
            if key in self._seen:
                raise ReplayedRequest("this sealed request was already received; seal a new one")
            if len(self._seen) >= self.max_entries:
                # Refuse rather than forget: forgetting early would reopen the replay window.
                raise ServiceUnavailable(
                    "replay cache is full; retry shortly", code="replay_cache_full", retry_after_s=self.window_s / 10
                )
            self._seen[key] = now + 2 * self.window_s

    def forget(self, tenant_id: str, request_id: bytes) -> None:
        """Give back an id remembered by a check whose request was then refused before anything was opened
        (the shared cache could not record it): the client's retry of the same body is not a replay."""
        with self._mutex:
            self._seen.pop((tenant_id, request_id), None)

    def _expire(self, now: float) -> None:
        while self._seen:
            key, expires_at = next(iter(self._seen.items()))
            if expires_at > now:
                break
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)
