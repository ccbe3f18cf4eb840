"""Everything one server needs, built once from `Settings` and passed in (no module-level singletons)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleanroom.access import ClientAddressResolver
from cleanroom.audit.sink import AuditLogSink
from cleanroom.config import Settings
from cleanroom.keys.factory import kms_from_settings, master_key_name
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.kms import KMS
from cleanroom.keys.lifecycle import KeyManager
from cleanroom.keys.registry import Registry
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.admission import TenantLimits
from cleanroom.runtime.batch_runner import SealedBatchRunner
from cleanroom.runtime.models import ModelRegistry
from cleanroom.runtime.replay_shared import build_replay_cache
from cleanroom.runtime.scheduler import Scheduler, cpu_devices
from cleanroom.runtime.scheduler_core import SchedulerConfig
from cleanroom.runtime.scheduler_metrics import SchedulerMetrics
from cleanroom.runtime.session import AuditSink, RequestOpener, Runtime
from cleanroom.runtime.torch_threads import limit_torch_threads
from cleanroom.scrubbers.base import Scrubber, ScrubPolicy, ScrubReport
from cleanroom.scrubbers.cpu import CpuScrubber
from cleanroom.server.metrics import ServerMetrics
from cleanroom.storage import atomic_write_bytes, atomic_write_json, ensure_private_dir
from cleanroom.tenants import TenantService

log = logging.getLogger("cleanroom.server")


def open_kms(settings: Settings) -> KMS:
    return kms_from_settings(settings)


def admin_token_path(data_dir: Path) -> Path:
    return Path(data_dir) / "admin.token"


def admin_token(data_dir: Path) -> str:
    """The admin API token, created once in a 0600 file; the CLI reads it to act on a running server."""
    path = admin_token_path(data_dir)
    if not path.exists():
        atomic_write_bytes(path, secrets.token_urlsafe(32).encode("ascii"))
    return path.read_text(encoding="ascii").strip()


def server_state_path(data_dir: Path) -> Path:
    return Path(data_dir) / "server.json"


def publish_server_state(data_dir: Path, **where: Any) -> dict[str, Any]:
    """Write DATA_DIR/server.json (atomically, 0600) so that `tenant` and `keys` commands on this data dir act
    through this process (`admin_client.running_server`): its pid, the admin token's file, and where its
    admin API listens (`url` and `tls_cert` for `cleanroom serve`, `admin_socket` for the ASGI middleware)."""
    state = {"pid": os.getpid(), "admin_token_file": str(admin_token_path(data_dir)), **where}
    atomic_write_json(server_state_path(data_dir), state)
    return state


def withdraw_server_state(data_dir: Path, published: Mapping[str, Any] | None = None) -> None:
    """Remove server.json if this process wrote it (and, given `published`, if it is still that document):
    a file written since by another server on the data dir is left alone."""
    path = server_state_path(data_dir)
    with contextlib.suppress(FileNotFoundError, ValueError, OSError):
        current = json.loads(path.read_text())
        if current.get("pid") == os.getpid() and (published is None or current == dict(published)):
            path.unlink()


def build_scrubber(device: str, policy: ScrubPolicy, audit: Any) -> Scrubber:
    """The GPU scrubber when CUDA is present (or asked for), else the CPU fallback; both fail closed."""

    def on_quarantine(report: ScrubReport) -> None:
        log.critical("device %s quarantined after a failed scrub verification", report.device)
        try:
            audit.record(
                {"event": "alert.device_quarantined", "device": report.device, "nonzero_bytes": report.nonzero_bytes}
            )
        except Exception:  # the quarantine itself already stops all work on the device
            log.exception("could not record the quarantine alert")

    if device == "cpu":
        return CpuScrubber(policy=policy, on_quarantine=on_quarantine)
    import torch

    if device.startswith("cuda") or torch.cuda.is_available():
        from cleanroom.scrubbers.gpu import GpuScrubber

        return GpuScrubber("cuda:0" if device == "auto" else device, policy=policy, on_quarantine=on_quarantine)
    return CpuScrubber(policy=policy, on_quarantine=on_quarantine)


def build_scheduler(
    settings: Settings, opener: RequestOpener, policy: ScrubPolicy, metrics: ServerMetrics
) -> Scheduler:
    """The tenant-fair scheduler over this host's devices; a tenant switch runs the between-tenant scrub."""
    limits = TenantLimits(
        max_queued=settings.tenant_max_queued,
        max_in_flight=settings.tenant_max_in_flight,
        rate_per_s=settings.tenant_rate_per_s,
        burst=settings.tenant_burst,
        queue_timeout_s=settings.queue_timeout_s,
    )
    config = SchedulerConfig(
        policy=settings.scheduler_policy,
        fairness_bound_s=settings.fairness_bound_s,
        latency_bound_s=settings.latency_bound_s,
        max_batch_delay_ms=settings.max_batch_delay_ms,
        max_total_queued=settings.max_total_queued,
        default_limits=limits,
        prepare_ahead=settings.prepare_ahead,
        shared_batch_cost_factor=settings.shared_batch_cost_factor,
    )
    scrubber = opener.scrubber
    devices = (
        [scrubber.device]
        if scrubber is not None and scrubber.device.startswith("cuda")
        else cpu_devices(settings.cpu_workers)
    )

    def on_tenant_switch(device: str, previous: str | None, tenant: str) -> ScrubReport | None:
        # per_request: the runner already scrubbed after the previous batch, the device is clean.
        if opener.scrubber is None or policy.mode == "per_request":
            return None
        return opener.scrubber.between_tenant_scrub()

    return Scheduler(config, devices, SchedulerMetrics.create(metrics.registry), on_tenant_switch=on_tenant_switch)


@dataclass
class Services:
    settings: Settings
    kms: KMS
    registry: Registry
    keyring: Keyring
    tenants: TenantService
    models: ModelRegistry
    allocator: SecureAllocator
    runtime: Runtime
    metrics: ServerMetrics
    executor: ThreadPoolExecutor
    admin_token: str
    audit: Any
    keys: Any
    addresses: ClientAddressResolver
    scheduler: Scheduler
    runners: dict[str, SealedBatchRunner]
    extras: dict[str, Any] = field(default_factory=dict)
    _closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
        if hasattr(self.audit, "close"):
            self.audit.close()
        self.tenants.close()
        self.kms.close()


def build_services(
    settings: Settings, *, audit: AuditSink | None = None, models: ModelRegistry | None = None
) -> Services:
    data_dir = ensure_private_dir(Path(settings.data_dir))
    kms = open_kms(settings)
    registry = Registry(data_dir)
    keyring = Keyring(
        registry,
        kms,
        master_key_name=master_key_name(settings),
        ttl_s=settings.key_cache_ttl_s,
        max_entries=settings.key_cache_max_entries,
    )
    keyring.ensure_master_key()
    tenants = TenantService(registry, keyring)
    allocator = SecureAllocator(lock=settings.mlock)
    if settings.torch_threads is not None:  # before the models load torch (embedded use skips `serve`)
        limit_torch_threads(settings.torch_threads)
    models = models or ModelRegistry.load(
        settings.models, settings.user_models, max_minilm_inputs=settings.max_minilm_inputs
    )
    metrics = ServerMetrics.create()
    audit_sink: Any = audit or AuditLogSink(data_dir, kms, keyring.master_key_name, settings, metrics.registry)
    tenants.audit = audit_sink
    keyring.audit = audit_sink
    policy = ScrubPolicy(mode=settings.scrub_policy)
    scrubber = build_scrubber(settings.device, policy, audit_sink)
    opener = RequestOpener(
        registry=registry,
        keyring=keyring,
        allocator=allocator,
        audit=audit_sink,
        replay=build_replay_cache(
            data_dir, settings.replay_window_s, settings.replay_cache_max_entries, shared=settings.replay_shared
        ),
        scrubber=scrubber,
    )
    runtime = Runtime(opener=opener, models=models, policy=policy)
    workers = max(1, settings.cpu_workers)
    scheduler = build_scheduler(settings, opener, policy, metrics)
    runners = {
        name: SealedBatchRunner(opener, models.get(name), policy, settings.max_batch_size) for name in models.names()
    }
    return Services(
        settings=settings,
        kms=kms,
        registry=registry,
        keyring=keyring,
        tenants=tenants,
        models=models,
        allocator=allocator,
        runtime=runtime,
        metrics=metrics,
        scheduler=scheduler,
        runners=runners,
        executor=ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cleanroom-worker"),
        admin_token=admin_token(data_dir),
        audit=audit_sink,
        keys=KeyManager(registry, keyring, audit=audit_sink),
        addresses=ClientAddressResolver(settings.trusted_proxies, settings.client_ip_header),
        extras={"pid": os.getpid()},
    )
