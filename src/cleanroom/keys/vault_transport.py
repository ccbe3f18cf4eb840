"""One Transit HTTP call over hvac, and the mapping of every way it can fail onto our error types.

One job: send a request to `<mount>/<path>` and return its JSON, or raise a `CleanroomError` that says
what the operator should do (unreachable -> KMSUnavailable with a retry hint, 403 -> KMSPermissionDenied,
a soft-deleted key -> SystemSealed, ...). It is separate from `vault.py` because the mapping depends on
Transit's error strings and hvac's exception classes, not on which key operation is running, and the
batch endpoints reuse it for each item's error string.
"""

from __future__ import annotations

from typing import Any

from cleanroom.errors import (
    CleanroomError,
    ConfigurationError,
    DecryptionFailed,
    KeyError_,
    KMSPermissionDenied,
    KMSUnavailable,
    SystemSealed,
)

# Transit's own error strings (stable across Vault 1.x and OpenBao 2.x) mapped to our error types.
_SEALED_MARKERS = ("soft-deleted",)
_RETIRED_MARKERS = ("disallowed by policy",)
_MISSING_MARKERS = ("key not found", "no existing key named")
_AUTH_MARKERS = ("message authentication failed", "invalid ciphertext", "version is too new", "decode")


class TransitTransport:
    """Requests to one Transit mount through an `hvac.Client` (whose requests session is thread-safe)."""

    def __init__(self, client: Any, addr: str, mount: str, retry_after_s: float) -> None:
        self.client, self._addr, self._mount, self._retry_after_s = client, addr, mount, retry_after_s

    def request(
        self, method: str, path: str, payload: dict[str, Any] | None = None, *, batch: bool = False
    ) -> dict[str, Any]:
        """One Transit call; every failure comes out as a CleanroomError."""
        import hvac.exceptions as hv
        import requests

        url = f"/v1/{self._mount}/{path}"
        try:
            response = self.client.adapter.request(method, url, json=payload)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise KMSUnavailable(
                f"cannot reach Vault/OpenBao at {self._addr} ({type(exc).__name__})", retry_after_s=self._retry_after_s
            ) from None
        except (hv.VaultDown, hv.BadGateway, hv.RateLimitExceeded, hv.VaultNotInitialized) as exc:
            raise KMSUnavailable(
                f"Vault/OpenBao at {self._addr} is not serving ({type(exc).__name__}: sealed, standby or busy)",
                retry_after_s=self._retry_after_s,
            ) from None
        except hv.Forbidden:
            raise KMSPermissionDenied(
                f"Vault/OpenBao refused the token for {method} {url} (403): check the token's policy and TTL"
            ) from None
        except hv.VaultError as exc:
            body = getattr(exc, "json", None)
            if batch and isinstance(body, dict) and isinstance(body.get("data"), dict):
                return body  # a batch whose items failed: the caller reads each item's error
            raise self.map_error(exc, path) from None
        if isinstance(response, dict):
            return response
        return {}  # 204 No Content

    def map_error(self, exc: Exception, path: str) -> CleanroomError:
        import hvac.exceptions as hv

        errors = getattr(exc, "errors", None) or [str(exc)]
        text = "; ".join(str(e) for e in errors)[:300]
        lowered = text.lower()
        key = path.split("/")[-1]
        if any(m in lowered for m in _SEALED_MARKERS):
            return SystemSealed(
                f"master key {key!r} is disabled (soft-deleted in Transit); run `cleanroom keys restore --system`",
                retry_after_s=60,
            )
        if any(m in lowered for m in _RETIRED_MARKERS):
            return KeyError_("master key version is below the minimum decryption version", code="key_version_retired")
        if any(m in lowered for m in _MISSING_MARKERS) or isinstance(exc, hv.InvalidPath):
            return KeyError_(f"no Transit key {key!r} at mount {self._mount!r} ({text})", code="unknown_key")
        if isinstance(exc, hv.InternalServerError):
            return KMSUnavailable(f"Vault/OpenBao internal error: {text}", retry_after_s=self._retry_after_s)
        if isinstance(exc, hv.UnsupportedOperation):
            return ConfigurationError(f"Transit does not support {path!r} on this server ({text})")
        if any(m in lowered for m in _AUTH_MARKERS) or path.startswith(("decrypt/", "rewrap/")):
            return DecryptionFailed("wrapped key failed to authenticate (wrong key, context or tampered)")
        return KeyError_(f"Transit refused {path!r}: {text}")

    def batch_item_error(self, index: int, message: str, path: str) -> CleanroomError:
        """A batch item's error string, mapped as a whole call's would be, naming the item."""
        err = self.map_error(_ItemError(message), path)
        return type(err)(f"batch item {index}: {err.message}", code=err.code, retry_after_s=err.retry_after_s)

    def close(self) -> None:
        session = getattr(self.client.adapter, "session", None)
        if session is not None:
            session.close()


class _ItemError(Exception):
    """A per-item error string from a batch response, run through the same mapping as a call error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errors = [message]
