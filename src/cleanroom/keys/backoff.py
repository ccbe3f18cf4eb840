"""Fail fast while a KMS is away, instead of waiting out its timeout on every call.

Keys are unwrapped on a device's worker thread when a batch is scheduled. A KMS that hangs (a network
partition, a sealed server behind a load balancer that accepts and stalls) would hold that device — every
tenant's work on it — for a full client timeout on each batch that misses the key cache. So after a call
fails as *unavailable*, further calls for the same KMS fail at once with the same 503 until the error's
Retry-After has passed; then one call tries again, and a success or a new failure decides what follows.

Refusals (403: a revoked token, a disabled key) are not outages and never open the window: the next call
asks again, so a key that is re-enabled works at once.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable

from cleanroom.errors import ServiceUnavailable

DEFAULT_WINDOW_S = 5.0


class FailFast:
    """Per-KMS (keyed by any string: a tenant id for customer KMSs, "" for our own) back-off windows."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_window_s: float = 30.0) -> None:
        self._clock, self._max_window_s = clock, max_window_s
        self._down: dict[str, tuple[float, ServiceUnavailable]] = {}  # key -> (until, the error that opened it)
        self._mutex = threading.Lock()

    def check(self, key: str) -> None:
        """Raise the error that opened `key`'s window while it is open (with the time left as Retry-After)."""
        with self._mutex:
            down = self._down.get(key)
            if down is None:
                return
            left = down[0] - self._clock()
            if left <= 0:
                del self._down[key]  # the window is over: this caller is the one that tries again
                return
        error = copy.copy(down[1])  # the same class, code and message; its own Retry-After
        error.retry_after_s = left
        raise error

    def mark_down(self, key: str, error: ServiceUnavailable) -> None:
        window = min(self._max_window_s, error.retry_after_s or DEFAULT_WINDOW_S)
        with self._mutex:
            self._down[key] = (self._clock() + window, error)

    def clear(self, key: str | None = None) -> None:
        """Close one window (after a reconfiguration) or all of them."""
        with self._mutex:
            if key is None:
                self._down.clear()
            else:
                self._down.pop(key, None)


__all__ = ["DEFAULT_WINDOW_S", "FailFast"]
