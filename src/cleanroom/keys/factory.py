"""Build the KMS the settings ask for (`CLEANROOM_KMS=local|vault|pkcs11|aws`), checked at start-up.

Each backend's client library is imported only when that backend is chosen, so a deployment installs
only its own extra (`cleanroom[vault]`, `[pkcs11]`, `[aws]`). Missing or contradictory settings raise
`ConfigurationError` here, before the server listens, never on the first request.
"""

from __future__ import annotations

from cleanroom.config import Settings
from cleanroom.errors import ConfigurationError
from cleanroom.keys.kms import KMS


def master_key_name(settings: Settings) -> str:
    """The name of the master key in the chosen backend (`vault_key`, `pkcs11_key`, `aws_kms_key_id`)."""
    if settings.kms == "vault":
        return settings.vault_key
    if settings.kms == "pkcs11":
        return settings.pkcs11_key
    if settings.kms == "aws":
        return settings.aws_kms_key_id
    return "cleanroom-master"


def kms_from_settings(settings: Settings) -> KMS:
    """The configured backend; the caller owns it and calls `close()` at shutdown."""
    if settings.kms == "local":
        from cleanroom.keys.local import LocalKMS

        return LocalKMS(settings.data_dir)
    if settings.kms == "vault":
        return _vault(settings)
    if settings.kms == "pkcs11":
        return _pkcs11(settings)
    if settings.kms == "aws":
        return _aws(settings)
    raise ConfigurationError(f"unknown KMS backend {settings.kms!r}")  # pragma: no cover - Literal-checked


def _require(settings: Settings, *names: str) -> None:
    missing = [f"CLEANROOM_{n.upper()}" for n in names if not getattr(settings, n)]
    if missing:
        raise ConfigurationError(f"CLEANROOM_KMS={settings.kms} needs {', '.join(missing)}")


def _extra(backend: str, module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(
            f"CLEANROOM_KMS={backend} needs the {backend} extra: pip install 'cleanroom[{backend}]'"
        )


def _vault(settings: Settings) -> KMS:
    _require(settings, "vault_addr", "vault_token")
    _extra("vault", "hvac")
    from cleanroom.keys.vault import VaultTransitKMS

    assert settings.vault_addr is not None and settings.vault_token is not None
    verify: bool | str = str(settings.vault_ca_cert) if settings.vault_ca_cert else True
    return VaultTransitKMS(
        settings.vault_addr,
        settings.vault_token,
        settings.vault_mount,
        timeout_s=settings.kms_timeout_s,
        verify=verify,
        namespace=settings.vault_namespace,
    )


def _pkcs11(settings: Settings) -> KMS:
    _require(settings, "pkcs11_lib", "pkcs11_token_label", "pkcs11_pin")
    _extra("pkcs11", "pkcs11")
    from cleanroom.keys.pkcs11 import Pkcs11KMS

    assert settings.pkcs11_lib and settings.pkcs11_token_label and settings.pkcs11_pin
    return Pkcs11KMS(
        settings.pkcs11_lib,
        settings.pkcs11_token_label,
        settings.pkcs11_pin,
        key_label_prefix=settings.pkcs11_key_label_prefix,
    )


def _aws(settings: Settings) -> KMS:
    _require(settings, "aws_region")
    _extra("aws", "boto3")
    from cleanroom.keys.aws import AwsKMS

    assert settings.aws_region is not None
    return AwsKMS(settings.aws_region, endpoint_url=settings.aws_endpoint_url, timeout_s=settings.kms_timeout_s)
