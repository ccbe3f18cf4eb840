"""`AwsKMS`: master keys in AWS KMS (symmetric `SYMMETRIC_DEFAULT` keys), over boto3 (the `aws` extra).

Key names. A `key_name` is used as AWS spells it when it already is a key id, a key ARN, an alias ARN or
`alias/...`; a plain name `N` means `alias/N`, and `create_key(N)` creates a key and that alias when the
alias does not exist. A customer's own key (bring-your-own-key) is named by its ARN.

Context binding. AWS KMS binds an EncryptionContext (a string map) as AAD. Ours is
`{"cleanroom:context": base64(context), "cleanroom:version": "<N>"}`; Decrypt with another context fails
with InvalidCiphertextException, and the key id is bound by AWS itself (we also pass KeyId on Decrypt).

Versions. AWS rotation is transparent: old ciphertexts decrypt with the backing key they were made with,
and AWS has no minimum decryption version. cleanroom's version of a key is 1 + the number of rotations
`ListKeyRotations` reports (on-demand and automatic), written into the EncryptionContext so a relabelled
version fails to decrypt. `set_min_decryption_version` stores the minimum in the key tag
`cleanroom:min_decryption_version` and **cleanroom** refuses older versions; AWS would still decrypt them
for anyone holding kms:Decrypt. Revoking that is `disable` (DisableKey), which AWS enforces server-side.
On-demand rotation (`RotateKeyOnDemand`) is limited by AWS to 10 per key; `enable_automatic_rotation`
sets the yearly (or other) schedule instead.

Caching. Each call needs the key's state (enabled, newest version, minimum version): that is read with
DescribeKey + ListKeyRotations + ListResourceTags and kept `policy_ttl_s` (default 5 s) so a request
costs one KMS call. Changes made through this object take effect here at once; changes made elsewhere
are seen by cleanroom's own checks after at most `policy_ttl_s` (AWS enforces DisableKey immediately).

Rewrap uses ReEncrypt: AWS decrypts and re-encrypts inside KMS, so the key never reaches us.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import dataclass
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
from cleanroom.keys.kms import KeyDescription, WrappedKey

CONTEXT_KEY = "cleanroom:context"
VERSION_KEY = "cleanroom:version"
MIN_VERSION_TAG = "cleanroom:min_decryption_version"
_KEY_ID_RE = re.compile(
    r"^(?:mrk-)?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$|^mrk-[0-9a-f]{32}$"
)
_ALIAS_NAME_RE = re.compile(r"^[A-Za-z0-9/_-]{1,250}$")
_SEALED_CODES = frozenset({"DisabledException", "KMSInvalidStateException"})
_AUTH_CODES = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})
_DENIED_CODES = frozenset(
    {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
     "InvalidClientTokenId"}
)  # fmt: skip
_UNAVAILABLE_CODES = frozenset(
    {"ThrottlingException", "KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException",
     "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "RequestTimeout"}
)  # fmt: skip


@dataclass(frozen=True)
class _Policy:
    key_id: str
    arn: str
    enabled: bool
    state: str
    latest_version: int
    min_decryption_version: int
    created_at: float
    rotated_at: float
    origin: str
    read_at: float


def resolve_key_id(key_name: str) -> str:
    """The KeyId AWS takes for `key_name` (see the module docstring)."""
    if key_name.startswith(("arn:", "alias/")) or _KEY_ID_RE.match(key_name):
        return key_name
    if not _ALIAS_NAME_RE.match(key_name) or key_name.startswith("aws/"):
        raise KeyError_(f"invalid AWS KMS key name {key_name!r}", code="invalid_key_name")
    return f"alias/{key_name}"


class AwsKMS:
    """Master keys in AWS KMS. Thread-safe (boto3 clients are; the policy cache is locked).

    Credentials come from boto3's usual chain (environment, profile, instance role) or the `session`
    passed in. The IAM policy needs kms:Encrypt, Decrypt, ReEncrypt*, GenerateDataKey, DescribeKey,
    ListKeyRotations, ListResourceTags; and for the admin commands CreateKey, CreateAlias, TagResource,
    RotateKeyOnDemand, EnableKeyRotation, EnableKey, DisableKey.
    """

    name = "aws"

    def __init__(
        self,
        region: str,
        *,
        endpoint_url: str | None = None,
        timeout_s: float = 5.0,
        session: Any = None,
        policy_ttl_s: float = 5.0,
        retry_after_s: float = 5.0,
    ) -> None:
        if not region:
            raise ConfigurationError("AWS region is empty (set CLEANROOM_AWS_REGION)")
        if timeout_s <= 0 or retry_after_s <= 0 or policy_ttl_s < 0:
            raise ConfigurationError("timeout_s and retry_after_s must be positive, policy_ttl_s >= 0")
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - the `aws` extra
            raise ConfigurationError("the aws KMS needs boto3 (pip install 'cleanroom[aws]')") from exc
        config = Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        session = session or boto3.session.Session()
        self._client = session.client("kms", region_name=region, endpoint_url=endpoint_url, config=config)
        self._region, self._endpoint = region, endpoint_url
        self._ttl_s, self._retry_after_s = policy_ttl_s, retry_after_s
        self._lock = threading.Lock()
        self._policies: dict[str, _Policy] = {}

    # --- transport ------------------------------------------------------------------------------
    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One KMS API call; every failure comes out as a CleanroomError."""
        from botocore import exceptions as bx

        try:
            result: dict[str, Any] = getattr(self._client, operation)(**params)
            return result
        except bx.ClientError as exc:
            raise self._map_error(exc, operation) from None
        except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
            raise KMSPermissionDenied(f"no usable AWS credentials ({type(exc).__name__})") from None
        except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                bx.ConnectionClosedError, bx.HTTPClientError) as exc:  # fmt: skip
            raise KMSUnavailable(
                f"cannot reach AWS KMS in {self._region} ({type(exc).__name__})", retry_after_s=self._retry_after_s
            ) from None

    def _map_error(self, exc: Any, operation: str) -> CleanroomError:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))[:300]
        if code in _SEALED_CODES:
            return SystemSealed(
                f"AWS KMS key is not usable ({code}: {message}); run `cleanroom keys restore --system`",
                retry_after_s=60,
            )
        if code in _AUTH_CODES:
            return DecryptionFailed("wrapped key failed to authenticate (wrong key, context or tampered)")
        if code in _DENIED_CODES:
            return KMSPermissionDenied(f"AWS KMS refused {operation} ({code}): check the IAM policy and credentials")
        if code in _UNAVAILABLE_CODES:
            return KMSUnavailable(f"AWS KMS is not serving ({code})", retry_after_s=self._retry_after_s)
        if code == "NotFoundException":
            return KeyError_(f"AWS KMS key not found ({message})", code="unknown_key")
        return KeyError_(f"AWS KMS refused {operation} ({code}: {message})")

    # --- key state ------------------------------------------------------------------------------
    def _policy(self, key_name: str, *, fresh: bool = False) -> _Policy:
        now = time.monotonic()
        with self._lock:
            cached = self._policies.get(key_name)
        if cached is not None and not fresh and now - cached.read_at < self._ttl_s:
            return cached
        key_id = resolve_key_id(key_name)
        meta = self._call("describe_key", KeyId=key_id)["KeyMetadata"]
        if meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT" or meta.get("KeyUsage") != "ENCRYPT_DECRYPT":
            raise ConfigurationError(f"AWS KMS key {key_name!r} is not a symmetric ENCRYPT_DECRYPT key")
        rotations: list[dict[str, Any]] = []
        params: dict[str, Any] = {"KeyId": meta["KeyId"]}
        while True:
            page = self._call("list_key_rotations", **params)
            rotations.extend(page.get("Rotations", []))
            if not page.get("Truncated"):
                break
            params["Marker"] = page["NextMarker"]
        tags = self._call("list_resource_tags", KeyId=meta["KeyId"]).get("Tags", [])
        minimum = next((t["TagValue"] for t in tags if t.get("TagKey") == MIN_VERSION_TAG), "1")
        created = _timestamp(meta.get("CreationDate"))
        policy = _Policy(
            key_id=meta["KeyId"],
            arn=meta.get("Arn", ""),
            enabled=meta.get("KeyState") == "Enabled",
            state=str(meta.get("KeyState")),
            latest_version=1 + len(rotations),
            min_decryption_version=int(minimum) if str(minimum).isdigit() else 1,
            created_at=created,
            rotated_at=max([created] + [_timestamp(r.get("RotationDate")) for r in rotations]),
            origin=str(meta.get("Origin", "")),
            read_at=now,
        )
        with self._lock:
            self._policies[key_name] = policy
        return policy

    def _usable(self, key_name: str) -> _Policy:
        policy = self._policy(key_name)
        if not policy.enabled:
            raise SystemSealed(
                f"AWS KMS key {key_name!r} is {policy.state}; run `cleanroom keys restore --system`",
                retry_after_s=60,
            )
        return policy

    def _forget(self, key_name: str) -> None:
        with self._lock:
            self._policies.pop(key_name, None)

    @staticmethod
    def _context(context: bytes, version: int) -> dict[str, str]:
        return {CONTEXT_KEY: base64.b64encode(bytes(context)).decode("ascii"), VERSION_KEY: str(version)}

    def _check_record(self, wrapped: WrappedKey) -> None:
        if wrapped.kms != self.name:
            raise DecryptionFailed(f"key was wrapped by the {wrapped.kms!r} KMS, not {self.name!r}")
        if wrapped.version < 1 or not wrapped.ciphertext:
            raise DecryptionFailed("wrapped key record has no ciphertext or an invalid version")

    # --- KMS protocol ---------------------------------------------------------------------------
    def create_key(self, key_name: str) -> None:
        """Create a symmetric key and `alias/<key_name>` unless the name already resolves to a key."""
        key_id = resolve_key_id(key_name)
        try:
            self._policy(key_name, fresh=True)
            return
        except KeyError_ as exc:
            if exc.code != "unknown_key" or not key_id.startswith("alias/"):
                raise
        meta = self._call(
            "create_key",
            KeySpec="SYMMETRIC_DEFAULT",
            KeyUsage="ENCRYPT_DECRYPT",
            Description=f"cleanroom master key {key_name}",
            Tags=[{"TagKey": MIN_VERSION_TAG, "TagValue": "1"}],
        )["KeyMetadata"]
        self._call("create_alias", AliasName=key_id, TargetKeyId=meta["KeyId"])
        self._forget(key_name)

    def wrap(self, key_name: str, plaintext: bytes | bytearray | memoryview, context: bytes) -> WrappedKey:
        policy = self._usable(key_name)
        version = policy.latest_version
        result = self._call(
            "encrypt",
            KeyId=policy.key_id,
            Plaintext=bytes(plaintext),
            EncryptionContext=self._context(context, version),
        )
        return WrappedKey(kms=self.name, key_name=key_name, version=version, ciphertext=result["CiphertextBlob"])

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytearray:
        self._check_record(wrapped)
        policy = self._usable(wrapped.key_name)
        if wrapped.version < policy.min_decryption_version:
            raise KeyError_("master key version is below the minimum decryption version", code="key_version_retired")
        result = self._call(
            "decrypt",
            KeyId=policy.key_id,
            CiphertextBlob=wrapped.ciphertext,
            EncryptionContext=self._context(context, wrapped.version),
        )
        return bytearray(result["Plaintext"])

    def generate_data_key(self, key_name: str, context: bytes, size_bytes: int = 32) -> tuple[bytearray, WrappedKey]:
        if not 1 <= size_bytes <= 1024:
            raise KeyError_("AWS data keys are 1 to 1024 bytes", code="invalid_key_size")
        policy = self._usable(key_name)
        version = policy.latest_version
        result = self._call(
            "generate_data_key",
            KeyId=policy.key_id,
            NumberOfBytes=size_bytes,
            EncryptionContext=self._context(context, version),
        )
        wrapped = WrappedKey(kms=self.name, key_name=key_name, version=version, ciphertext=result["CiphertextBlob"])
        return bytearray(result["Plaintext"]), wrapped

    def rotate(self, key_name: str) -> int:
        """RotateKeyOnDemand (AWS allows 10 per key): new encryptions use new backing key material."""
        policy = self._usable(key_name)
        self._call("rotate_key_on_demand", KeyId=policy.key_id)
        return self._policy(key_name, fresh=True).latest_version

    def enable_automatic_rotation(self, key_name: str, period_days: int = 365) -> None:
        if not 90 <= period_days <= 2560:
            raise KeyError_("AWS rotation periods are 90 to 2560 days", code="invalid_rotation_period")
        self._call("enable_key_rotation", KeyId=self._policy(key_name).key_id, RotationPeriodInDays=period_days)

    def set_min_decryption_version(self, key_name: str, version: int) -> None:
        """Stored as a key tag; enforced by cleanroom (AWS has no such setting), see the module docstring."""
        policy = self._policy(key_name, fresh=True)
        if not 1 <= version <= policy.latest_version:
            raise KeyError_(
                f"minimum version must be between 1 and {policy.latest_version}", code="invalid_key_version"
            )
        self._call("tag_resource", KeyId=policy.key_id, Tags=[{"TagKey": MIN_VERSION_TAG, "TagValue": str(version)}])
        self._forget(key_name)

    def rewrap(self, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        """ReEncrypt inside AWS KMS: checks the old context, binds the new version; no plaintext here."""
        self._check_record(wrapped)
        policy = self._usable(wrapped.key_name)
        if wrapped.version < policy.min_decryption_version:
            raise KeyError_("master key version is below the minimum decryption version", code="key_version_retired")
        version = policy.latest_version
        result = self._call(
            "re_encrypt",
            CiphertextBlob=wrapped.ciphertext,
            SourceKeyId=policy.key_id,
            SourceEncryptionContext=self._context(context, wrapped.version),
            DestinationKeyId=policy.key_id,
            DestinationEncryptionContext=self._context(context, version),
        )
        return WrappedKey(
            kms=self.name, key_name=wrapped.key_name, version=version, ciphertext=result["CiphertextBlob"]
        )

    def disable(self, key_name: str) -> None:
        self._call("disable_key", KeyId=self._policy(key_name).key_id)
        self._forget(key_name)

    def enable(self, key_name: str) -> None:
        self._call("enable_key", KeyId=self._policy(key_name).key_id)
        self._forget(key_name)

    def describe(self, key_name: str) -> KeyDescription:
        policy = self._policy(key_name, fresh=True)
        rotation = self._call("get_key_rotation_status", KeyId=policy.key_id)
        return KeyDescription(
            name=key_name,
            backend=self.name,
            latest_version=policy.latest_version,
            min_decryption_version=policy.min_decryption_version,
            enabled=policy.enabled,
            created_at=policy.created_at,
            rotated_at=policy.rotated_at,
            extra={
                "arn": policy.arn,
                "key_state": policy.state,
                "origin": policy.origin,  # EXTERNAL: imported key material (BYOK)
                "automatic_rotation": bool(rotation.get("KeyRotationEnabled")),
                "rotation_period_days": rotation.get("RotationPeriodInDays"),
                "min_version_enforced_by": "cleanroom",
                "context_binding": "EncryptionContext",
            },
        )

    def close(self) -> None:
        self._client.close()


def _timestamp(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return float(value.timestamp())
