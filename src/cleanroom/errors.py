"""One error hierarchy for the whole runtime.

Every error carries a stable machine-readable `code` and the HTTP status it maps to, so the server turns any
of them into `{"error": {"code", "message"}}` without a lookup table, and a 500 can only come from a bug.
Messages help the caller fix the problem; they never contain key material or payload bytes.
"""

from __future__ import annotations

import math
from typing import Any

MAX_RETRY_AFTER_S = 3600  # a Retry-After beyond an hour is not advice a client can act on


class CleanroomError(Exception):
    """Base class: an error the runtime expects and knows how to report."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after_s = retry_after_s

    def to_body(self) -> dict[str, Any]:
        """The JSON error body of DESIGN §5."""
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict[str, str]:
        """`Retry-After` in whole seconds, rounded **up**: a client that waits what it is told must find the
        reason gone (1.4 s rounded to nearest went out as 1, and the obedient retry was refused again)."""
        if self.retry_after_s is None:
            return {}
        seconds = self.retry_after_s
        whole = math.ceil(seconds) if math.isfinite(seconds) else MAX_RETRY_AFTER_S
        return {"Retry-After": str(min(MAX_RETRY_AFTER_S, max(1, whole)))}


class BadRequest(CleanroomError):
    status, code = 400, "bad_request"


class InvalidSealedMessage(BadRequest):
    """A sealed request or response that does not parse or does not authenticate."""

    code = "invalid_sealed_message"


class DecryptionFailed(InvalidSealedMessage):
    """Authentication failed: the ciphertext, its context or the key is wrong."""

    code = "decryption_failed"


class ReplayedRequest(BadRequest):
    code = "replayed_request"


class StaleRequest(BadRequest):
    """The request's timestamp lies outside the replay window."""

    code = "stale_request"


class ContextMismatch(BadRequest):
    """The sealed metadata names another tenant or model than the call it arrived on."""

    code = "context_mismatch"


class Unauthenticated(CleanroomError):
    status, code = 401, "unauthenticated"


class CredentialRevoked(Unauthenticated):
    code = "credential_revoked"


class CredentialExpired(Unauthenticated):
    code = "credential_expired"


class Forbidden(CleanroomError):
    status, code = 403, "forbidden"


class TenantRevoked(Forbidden):
    code = "tenant_revoked"


class NotFound(CleanroomError):
    status, code = 404, "not_found"


class UnknownModel(NotFound):
    code = "unknown_model"


class UnknownTenant(NotFound):
    code = "unknown_tenant"


class Conflict(CleanroomError):
    status, code = 409, "conflict"


class RequestTimeout(CleanroomError):
    status, code = 408, "request_timeout"


class PayloadTooLarge(CleanroomError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(CleanroomError):
    status, code = 415, "unsupported_media_type"


class InvalidPayload(CleanroomError):
    """The request decrypted but its plaintext is not what the model takes."""

    status, code = 422, "invalid_payload"


class TooManyRequests(CleanroomError):
    status, code = 429, "too_many_requests"


class ServiceUnavailable(CleanroomError):
    status, code = 503, "service_unavailable"


class KMSUnavailable(ServiceUnavailable):
    code = "kms_unavailable"


class KMSPermissionDenied(ServiceUnavailable):
    """The KMS answered but refused our credentials (expired token, missing policy, wrong PIN).

    Not a `KMSUnavailable`: retrying does not help until an operator fixes the credential or its policy.
    """

    code = "kms_permission_denied"


class SystemSealed(ServiceUnavailable):
    """The master key is disabled: every request is refused until `keys restore --system`."""

    code = "system_sealed"


class AuditUnavailable(ServiceUnavailable):
    """The audit log could not record a decryption, so the plaintext is not released (fail closed)."""

    code = "audit_unavailable"


class DeviceQuarantined(ServiceUnavailable):
    code = "device_quarantined"


class RegistryUnreadable(ServiceUnavailable):
    """`tenants.json` cannot be read or parsed (edited by hand, truncated): no request is authenticated
    against a registry that may have lost a revocation, until it is fixed (fail closed)."""

    code = "registry_unreadable"


class KeyError_(CleanroomError):
    """A key could not be used: disabled, destroyed, below the minimum version, or the wrong one."""

    status, code = 403, "key_unavailable"


class ConfigurationError(CleanroomError):
    """Settings that cannot work; raised at start-up, never per request."""

    status, code = 500, "configuration_error"


class SecureMemoryError(CleanroomError):
    status, code = 503, "secure_memory_unavailable"


class SpillError(ServiceUnavailable):
    """A spill file could not be written or read (disk full, I/O error); the partial file is already gone."""

    code = "spill_failed"


class SpillIntegrityError(SpillError):
    """A spill file on disk does not authenticate: it was tampered with, truncated or extended."""

    code = "spill_integrity_failed"


class UnknownBatch(NotFound):
    """No batch job with this id for the calling tenant (another tenant's job looks exactly like none)."""

    code = "unknown_batch"


class BatchGone(CleanroomError):
    """The batch job existed but its data is shredded: `code` says why (batch_expired, batch_cancelled,
    batch_retrieved, batch_failed)."""

    status, code = 410, "batch_gone"


class BatchNotReady(Conflict):
    """The batch job's results are not complete yet (or another fetch of them is in progress)."""

    code = "batch_not_ready"
