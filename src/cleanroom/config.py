"""One `Settings` object for the whole runtime.

Read from `CLEANROOM_*` environment variables and, when `CLEANROOM_CONFIG` names one, a TOML file; CLI
flags override both (the CLI passes them as init arguments, which pydantic-settings ranks first). Settings
are passed down explicitly: no module keeps a global copy.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("./cleanroom-data")


# The built-in models (runtime/models.py), named here so that `serve` can refuse an unknown one before
# importing torch (the models' module does).
BUILTIN_MODELS = ("echo", "minilm")


class Settings(BaseSettings):
    """Every knob the runtime has, with defaults a production deployment can start from."""

    model_config = SettingsConfigDict(env_prefix="CLEANROOM_", extra="forbid", validate_default=True)

    # --- where and how to listen -------------------------------------------------------------------
    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    tls_mode: Literal["dev", "files", "off"] = "dev"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    models: list[str] = Field(default_factory=lambda: list(BUILTIN_MODELS))
    user_models: dict[str, str] = Field(default_factory=dict, description="NAME -> package.module:factory")

    # --- who may call from where ------------------------------------------------------------------
    trusted_proxies: list[str] = Field(default_factory=list, description="CIDRs whose forwarding header is believed")
    client_ip_header: str = "x-forwarded-for"

    # --- transport hardening (server/tls.py, server/limits.py; docs/hardening.md) ---------------------
    tls_client_ca: Path | None = Field(None, description="CA bundle that signs client certificates (mTLS)")
    tls_client_cert: Literal["none", "optional", "required"] = "none"
    tls_groups: list[str] = Field(
        default_factory=lambda: ["X25519", "P-384", "P-256"],
        description="ECDHE groups for the key exchange, preferred first",
    )
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024, description="request line + headers")
    header_timeout_s: float = Field(10.0, gt=0, description="deadline for a complete request head")
    body_timeout_s: float = Field(60.0, gt=0, description="deadline for a complete request body")
    keep_alive_timeout_s: int = Field(5, ge=1, le=300)
    max_connections: int = Field(1024, gt=0, description="open connections beyond this get 503")
    max_concurrent_requests: int = Field(512, gt=0, description="requests in flight beyond this get 503")

    # --- request limits --------------------------------------------------------------------------
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    replay_window_s: float = Field(300.0, gt=0)
    replay_cache_max_entries: int = Field(1_000_000, gt=0)
    replay_shared: bool = Field(
        True,
        description="claim request ids in DATA_DIR/replay, shared by every process serving the data dir "
        "(workers, replicas) and kept across restarts; false: this process's memory only, and a captured "
        "request can be replayed once to each other process",
    )
    request_timeout_s: float = Field(120.0, gt=0)
    max_minilm_inputs: int = Field(256, gt=0)

    # --- keys -------------------------------------------------------------------------------------
    kms: Literal["local", "vault", "pkcs11", "aws"] = "local"
    key_cache_ttl_s: float = Field(30.0, ge=0, le=3600)
    key_cache_max_entries: int = Field(1024, gt=0)
    tenant_key_rotation_days: float = Field(91.0, gt=0, description="data/tenant keys: quarterly")
    master_key_rotation_days: float = Field(365.0, gt=0, description="master key: yearly")
    credential_rotation_days: float = Field(91.0, gt=0, description="API keys: quarterly")
    rewrap_interval_s: float = Field(3600.0, ge=0, description="background rewrap check; 0 turns it off")
    hpke_overlap_s: float = Field(7 * 86400.0, ge=0, description="old HPKE keys keep opening this long")
    vault_addr: str | None = None
    vault_token: str | None = None
    vault_mount: str = "transit"
    vault_key: str = "cleanroom-master"
    vault_ca_cert: Path | None = Field(None, description="CA bundle for the Vault/OpenBao TLS certificate")
    vault_namespace: str | None = None
    kms_timeout_s: float = Field(5.0, gt=0, le=120, description="per-call timeout for vault and aws")
    pkcs11_lib: str | None = Field(None, description="the HSM vendor's PKCS#11 module (.so)")
    pkcs11_token_label: str | None = None
    pkcs11_pin: str | None = None
    pkcs11_key: str = Field("cleanroom-master", description="master key name; objects <prefix><name>.v<N>")
    pkcs11_key_label_prefix: str = "cleanroom-"
    aws_kms_key_id: str = Field("cleanroom-master", description="alias name, alias/..., key id or key ARN")
    aws_region: str | None = None
    aws_endpoint_url: str | None = None

    # --- audit log (audit/) and anomaly alerts --------------------------------------------------------
    audit_fsync: Literal["always", "group", "none"] = "group"
    audit_checkpoint_every_records: int = Field(1000, ge=1)
    audit_checkpoint_every_s: float = Field(60.0, gt=0)
    audit_segment_max_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    alert_webhook_url: str | None = None
    alert_business_hours: dict[str, str] = Field(
        default_factory=dict,
        description='tenant id (t_..., not its name) -> "Area/City:START-END" (Mon-Fri), e.g. "Europe/Berlin:8-18"',
    )
    alert_default_business_hours: str | None = Field(None, description='"Area/City:START-END" for every other tenant')

    # --- memory and process hardening -------------------------------------------------------------
    mlock: bool = True
    disable_core_dumps: bool = True
    not_dumpable: bool = True
    allocator_hardening: bool = True
    malloc_perturb_byte: int = Field(0xA5, ge=1, le=255)

    # --- runtime ------------------------------------------------------------------------------------
    cpu_workers: int = Field(1, ge=1, le=256)
    torch_threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="threads per torch forward pass (default: torch's own, one per core); lower it when device "
        "workers or other processes share the cores",
    )
    # --- scheduler (runtime/scheduler.py) ----------------------------------------------------------
    scheduler_policy: Literal["fair", "fifo"] = "fair"
    fairness_bound_s: float = Field(0.05, ge=0, description="service seconds a waiting tenant may fall behind")
    latency_bound_s: float = Field(0.025, ge=0, description="how long another tenant may wait to save a switch")
    max_batch_delay_ms: float = Field(2.0, ge=0)
    max_batch_size: int | None = Field(None, ge=1, description="cap on requests per batch (1: no batching)")
    prepare_ahead: bool = Field(
        True, description="open a busy device's next batch of the same tenant while the running one computes"
    )
    shared_batch_cost_factor: float = Field(
        1.5,
        ge=1,
        description="while a light tenant is around, a batch may cost at most this many one-request batches "
        "(it cannot be interrupted, so it is that tenant's latency floor); inf: no cap",
    )
    tenant_max_queued: int = Field(64, ge=1)
    tenant_max_in_flight: int = Field(128, ge=1)
    tenant_rate_per_s: float | None = Field(None, gt=0)
    tenant_burst: float | None = Field(None, ge=1)
    queue_timeout_s: float = Field(30.0, gt=0)
    max_total_queued: int = Field(4096, ge=1)
    drain_deadline_s: float = Field(30.0, ge=0, description="SIGTERM: how long in-flight work may finish")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")
    scrub_policy: Literal["per_request", "per_tenant_switch"] = "per_tenant_switch"

    # --- spill files and batch jobs (runtime/spill.py, runtime/batch_jobs.py; docs/batches.md) ------
    spill_dir: Path | None = Field(None, description="where encrypted spill files go (default DATA_DIR/spill)")
    spill_segment_bytes: int = Field(
        256 * 1024,
        ge=64 * 1024,
        le=1024 * 1024,
        description="plaintext bytes per spill segment (one locked staging buffer)",
    )
    spill_threshold_bytes: int = Field(
        8 * 1024 * 1024,
        ge=0,
        description=(
            "batch payloads larger than this are decrypted straight into a spill file, one segment at a time, "
            "instead of into one SecureBuffer"
        ),
    )
    batch_ttl_s: float = Field(
        3600.0, gt=0, description="a batch job and its results are shredded this long after submission, fetched or not"
    )
    batch_chunk_size: int = Field(16, ge=1, le=4096, description="batch items per scheduler request")
    batch_weight: float = Field(
        0.25, gt=0, le=1, description="a tenant's batch lane runs at this fraction of the tenant's weight"
    )
    max_batch_inputs: int = Field(10_000, ge=1, le=10_000_000)
    max_batch_body_bytes: int = Field(256 * 1024 * 1024, gt=0, description="sealed batch submission limit")
    max_batches_per_tenant: int = Field(8, ge=1, description="stored batch jobs per tenant (any state)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True

    @field_validator("host")
    @classmethod
    def _host_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("host must not be empty")
        if value.startswith("[") and value.endswith("]"):  # `[::1]`, as in a URL: the socket wants `::1`
            try:
                return str(ipaddress.IPv6Address(value[1:-1]))
            except ValueError:
                raise ValueError(f"{value} is not an IPv6 address in brackets") from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_path = os.environ.get("CLEANROOM_CONFIG")
        if config_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_path)))
        return tuple(sources)

    @property
    def host_is_loopback(self) -> bool:
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8 and ::1 literals, and for `localhost` when it resolves only to such addresses:
    the only hosts `--no-tls` may listen on (docs/operations.md). `localhost` is resolved, not trusted by
    its spelling: an /etc/hosts that maps it elsewhere would put plain HTTP on another interface."""
    return loopback_problem(host) is None


def loopback_problem(host: str) -> str | None:
    """None when `host` may carry plain HTTP (see `is_loopback_host`); otherwise why not, in words."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return None if address.is_loopback else f"{host} is not a loopback address"
    if host != "localhost":  # other names (and short forms such as 127.1) are refused, whatever they resolve to
        return f"{host} is not a loopback literal (127.0.0.0/8, ::1 or localhost)"
    resolved = resolve_host(host)
    if not resolved:
        return f"{host} does not resolve"
    elsewhere = sorted({a for a in resolved if not ipaddress.ip_address(a.split("%")[0]).is_loopback})
    if elsewhere:
        return f"{host} resolves to {', '.join(elsewhere)}, not only to loopback addresses (check /etc/hosts)"
    return None


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to for listening (what the server would bind); [] if none."""
    import socket

    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]
