"""Per-tenant admission control: queue and in-flight limits, a token-bucket rate, and the errors they raise.

Admission runs before a request is queued, on the event loop, so it is arithmetic only. A refused request
never holds a queue slot, a token, or a worker, and its caller learns when to retry:

- tenant over `max_queued`, over `max_in_flight` or out of tokens -> `TooManyRequests` (429) with
  `retry_after_s` (the `Retry-After` header);
- the whole scheduler over `max_total_queued` -> `ServiceUnavailable` (503, code ``overloaded``) with
  `retry_after_s`;
- a request that waited in the queue past its tenant's `queue_timeout_s` -> `RequestTimeout` (408, code
  ``queue_timeout``); it never reached a worker, so nothing of it ran.

Reject reasons are the error codes, so the metric label, the JSON body and the tests agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cleanroom.errors import RequestTimeout, ServiceUnavailable, TooManyRequests

REASON_QUEUE_FULL = "tenant_queue_full"
REASON_IN_FLIGHT = "tenant_in_flight_limit"
REASON_RATE = "tenant_rate_limited"
REASON_OVERLOADED = "overloaded"
REASON_SHUTTING_DOWN = "shutting_down"
REASON_QUEUE_TIMEOUT = "queue_timeout"
REASON_NO_DEVICE = "no_device_available"

REJECT_REASONS = (
    REASON_QUEUE_FULL,
    REASON_IN_FLIGHT,
    REASON_RATE,
    REASON_OVERLOADED,
    REASON_SHUTTING_DOWN,
    REASON_QUEUE_TIMEOUT,
    REASON_NO_DEVICE,
)


@dataclass(frozen=True)
class TenantLimits:
    """What one tenant may hold in the scheduler at once, and how fast it may add to it.

    `max_queued` counts requests waiting for a worker; `max_in_flight` counts requests admitted and not yet
    answered (waiting or running), so it also bounds what a tenant keeps on the devices. `rate_per_s` (None:
    unlimited) refills a bucket of `burst` tokens (None: one second's worth, at least 1); each admitted
    request takes one. `queue_timeout_s` is how long a request may wait before it is answered 408.
    """

    max_queued: int = 64
    max_in_flight: int = 128
    rate_per_s: float | None = None
    burst: float | None = None
    queue_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not (self.max_queued >= 1 and self.max_in_flight >= 1):  # NaN compared false: no limit at all
            raise ValueError("max_queued and max_in_flight must be at least 1")
        if self.rate_per_s is not None and not (self.rate_per_s > 0 and math.isfinite(self.rate_per_s)):
            raise ValueError("rate_per_s must be a positive number or None")
        if self.burst is not None and not self.burst >= 1:
            raise ValueError("burst must be at least 1 token")
        if not (self.queue_timeout_s > 0 and math.isfinite(self.queue_timeout_s)):
            raise ValueError("queue_timeout_s must be a positive number of seconds")

    @property
    def bucket_size(self) -> float:
        if self.burst is not None:
            return self.burst
        return max(1.0, self.rate_per_s or 1.0)


class TokenBucket:
    """A token bucket on an injected clock reading (`now`), so tests drive it without sleeping."""

    def __init__(self, rate_per_s: float, size: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.size = size
        self._tokens = size
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.size, self._tokens + (now - self._at) * self.rate_per_s)
            self._at = now

    def wait_s(self, now: float) -> float:
        """Seconds until one token is available (0.0 when one is available now)."""
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate_per_s

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1.0

    @property
    def tokens(self) -> float:
        return self._tokens


def bucket_for(limits: TenantLimits, now: float, previous: TokenBucket | None = None) -> TokenBucket | None:
    """The bucket `limits` call for; a changed limit keeps the tokens already earned (never more than fit)."""
    if limits.rate_per_s is None:
        return None
    bucket = TokenBucket(limits.rate_per_s, limits.bucket_size, now)
    if previous is not None:
        previous._refill(now)
        bucket._tokens = min(bucket.size, previous.tokens)
    return bucket


def check_tenant(
    tenant_id: str,
    limits: TenantLimits,
    *,
    queued: int,
    in_flight: int,
    bucket: TokenBucket | None,
    now: float,
    drain_estimate_s: float,
    retry_after_max_s: float,
) -> None:
    """Raise `TooManyRequests` when the tenant may not add one request now; takes no token (see `admit`).

    `drain_estimate_s` is the caller's estimate of how long until one of the tenant's slots frees up (one
    batch of its work at its fair share); it becomes `Retry-After` for the queue and in-flight limits.
    """
    retry = clamp_retry(drain_estimate_s, retry_after_max_s)
    if queued >= limits.max_queued:
        raise TooManyRequests(
            f"tenant {tenant_id} has {queued} requests queued, its limit is {limits.max_queued}; "
            f"retry in about {retry:.1f} s",
            code=REASON_QUEUE_FULL,
            retry_after_s=retry,
        )
    if in_flight >= limits.max_in_flight:
        raise TooManyRequests(
            f"tenant {tenant_id} has {in_flight} requests in flight, its limit is {limits.max_in_flight}; "
            f"retry in about {retry:.1f} s",
            code=REASON_IN_FLIGHT,
            retry_after_s=retry,
        )
    if bucket is not None:
        wait = bucket.wait_s(now)
        if wait > 0:
            raise TooManyRequests(
                f"tenant {tenant_id} is over its rate of {bucket.rate_per_s:g} requests/s; retry in {wait:.2f} s",
                code=REASON_RATE,
                retry_after_s=clamp_retry(wait, retry_after_max_s),
            )


def check_global(total_queued: int, max_total_queued: int, drain_estimate_s: float, retry_after_max_s: float) -> None:
    if total_queued >= max_total_queued:
        retry = clamp_retry(drain_estimate_s, retry_after_max_s)
        raise ServiceUnavailable(
            f"the scheduler is overloaded ({total_queued} requests queued in all); retry in about {retry:.1f} s",
            code=REASON_OVERLOADED,
            retry_after_s=retry,
        )


def shutting_down_error() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the server is shutting down and admits no new requests; retry on another instance", code=REASON_SHUTTING_DOWN
    )


def no_device_error() -> ServiceUnavailable:
    return ServiceUnavailable(
        "no device can run requests (every device is quarantined); the operator must restart the process",
        code=REASON_NO_DEVICE,
    )


def queue_timeout_error(model: str, waited_s: float, limit_s: float) -> RequestTimeout:
    return RequestTimeout(
        f"the request for model {model!r} waited {waited_s:.2f} s in the queue without reaching a worker "
        f"(limit {limit_s:g} s); nothing of it ran. The service is busy: retry later or send fewer requests "
        "at once",
        code=REASON_QUEUE_TIMEOUT,
    )


def clamp_retry(seconds: float, maximum_s: float) -> float:
    """A Retry-After worth sending: at least 0.1 s, at most `maximum_s`, and above 1 s a whole number of
    seconds rounded up. `CleanroomError.headers()` rounds to the nearest second (at least 1): a wait of
    1.4 s went out as `Retry-After: 1`, and a client that obeyed it was refused again."""
    if not math.isfinite(seconds):
        return maximum_s
    value = min(maximum_s, max(0.1, seconds))
    return float(math.ceil(value)) if value > 1.0 else value


__all__ = [
    "REJECT_REASONS",
    "TenantLimits",
    "TokenBucket",
    "bucket_for",
    "check_global",
    "check_tenant",
    "clamp_retry",
    "no_device_error",
    "queue_timeout_error",
    "shutting_down_error",
]
