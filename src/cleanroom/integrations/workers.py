"""Several cleanroom runtimes over one data dir: Ray Serve replicas, Triton model instances.

They share the tenant registry (`DATA_DIR/tenants.json`, written under an inter-process lock), the key
hierarchy (the KMS) and the replay cache (`DATA_DIR/replay/`, `runtime.replay_shared`: a request id
accepted by one worker is refused by every other; `replay_shared`, on by default), but an audit log has
exactly one writer: each worker writes its own, under
`DATA_DIR/workers/<worker id>/audit/`, verified like the main one
(`cleanroom audit verify --data-dir DATA_DIR/workers/<worker id>`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cleanroom.audit.sink import AuditLogSink
from cleanroom.config import Settings
from cleanroom.errors import AuditUnavailable
from cleanroom.memory.hardening import allocator_hardened, preloaded_allocators
from cleanroom.runtime.models import ModelRegistry
from cleanroom.server.services import Services, build_services

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def python_allocator() -> str:
    """The allocator this interpreter really uses ("malloc", "pymalloc", ...), not what the environment asks.

    `allocator_hardened()` reads the environment; an interpreter started isolated (Triton's python stub)
    has `PYTHONMALLOC=malloc` there and still runs pymalloc.
    """
    try:
        import _testcapi

        return str(_testcapi.pymem_getallocatorsname())
    except (ImportError, AttributeError, RuntimeError):
        return "unknown"


def allocator_problems(environ: Mapping[str, str]) -> list[str]:
    """Why the app's own copies of the plaintext (its `bytes`, its JSON) may outlive the request in this
    process: the interpreter did not start with the wiping allocator, or a preloaded allocator replaces it."""
    problems = []
    if not allocator_hardened(environ):
        problems.append(
            "the allocator does not wipe freed memory (run the server under `cleanroom exec -- ...`): "
            "the app's copies of request plaintext stay in memory after the request"
        )
    preloaded = preloaded_allocators(environ)
    if preloaded:
        problems.append(
            f"LD_PRELOAD replaces glibc's malloc ({', '.join(preloaded)}): "
            "`cleanroom exec`'s wiping does not apply to it"
        )
    return problems


def worker_data_dir(data_dir: Path, worker_id: str) -> Path:
    """Where a worker keeps what it alone writes (its audit log)."""
    safe = _UNSAFE.sub("_", worker_id)[:128]
    if not safe.strip("._"):
        raise ValueError("worker id must contain letters or digits")
    return Path(data_dir) / "workers" / safe


class WorkerAuditLog:
    """The worker's `AuditSink`, attached once its KMS exists (the services are built before it);
    records before that fail closed."""

    def __init__(self) -> None:
        self._sink: Any = None

    def attach(self, sink: Any) -> None:
        self._sink = sink

    def record(self, event: Mapping[str, Any]) -> None:
        if self._sink is None:
            raise AuditUnavailable("this worker's audit log is not open yet", retry_after_s=1)
        self._sink.record(event)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None


def build_worker_services(settings: Settings, worker_id: str, *, models: ModelRegistry | None = None) -> Services:
    """`build_services` for one of several processes on a shared data dir, with its own audit log."""
    audit = WorkerAuditLog()
    services = build_services(settings, audit=audit, models=models)
    try:
        audit.attach(
            AuditLogSink(
                worker_data_dir(settings.data_dir, worker_id),
                services.kms,
                services.keyring.master_key_name,
                settings,
                services.metrics.registry,
            )
        )
    except BaseException:
        services.close()
        raise
    return services
