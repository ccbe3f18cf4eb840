from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# The slowest files, slowest first (from a full `make test` run's junit times, Nov 2026; re-measure when
# this goes stale). `make test` runs `-n 2 --dist loadfile`: each worker takes the next file in the queue
# when it finishes one, so a 140 s file picked up last keeps one worker busy while the other idles. Replaying
# that run's file times through xdist's queue: 919 s with xdist's default order (by test count), 901 s with
# this list (890 s is the best split). Files not listed keep their collection order, after these.
SLOW_FIRST = (
    "test_remanence_failure_paths.py",
    "test_key_redteam.py",
    "test_observability_redteam.py",
    "test_gpu_check_script.py",
    "test_batch_jobs.py",
    "test_remanence.py",
    "test_redaction_equivalence.py",
    "test_cli.py",
    "test_ray_serve.py",
    "test_tls_mtls.py",
    "test_independent_client.py",
    "test_byok_external.py",
    "test_memory_redteam.py",
    "test_make_targets.py",
    "test_faults.py",
    "test_triton.py",
    "test_load.py",
    "test_access_policy.py",
    "test_kms_e2e.py",
    "test_fuzz.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Keep the collection order (slowest files first, below) as xdist's loadfile queue.

    xdist by default sorts the files by their number of tests (`--loadscope-reorder`), which puts the many
    fast parametrised corpus files first and the slow server files last. Set here rather than in addopts:
    an environment without xdist (the GPU check image) would reject the option."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slowest files first (a stable sort: the order inside a file is kept, some modules rely on it);
    `gpu` tests run only where CUDA is present; everything else always runs."""
    rank = {name: index for index, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class MemoryAudit:
    """An AuditSink for in-process tests that records events in a list.

    `record` is durable at once. `record_ahead` mimics the write-ahead log: the event is "written" (in
    `events`) at once and made "durable" by the first `wait_durable` after it, one `syncs` for every event
    written before it (group commit). `fail` fails every record; `fail_durability` fails the next sync and,
    like a real log after a failed fdatasync, every wait after it that it did not already cover.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = False
        self.fail_durability = False
        self.syncs = 0
        self.durable = 0
        self.broken: Exception | None = None

    def record(self, event: Any) -> None:
        self.record_ahead(event).wait_durable()

    def record_ahead(self, event: Any) -> MemoryTicket:
        from cleanroom.errors import AuditUnavailable

        if self.fail:
            raise AuditUnavailable("audit sink is failing (test)")
        self.events.append(dict(event))
        return MemoryTicket(self, len(self.events))

    def sync_through(self, end: int) -> None:
        from cleanroom.errors import AuditUnavailable

        if self.durable >= end:
            return
        if self.broken is None and self.fail_durability:
            self.broken = AuditUnavailable("audit log fsync failed: Input/output error (test)")
        if self.broken is not None:
            raise self.broken
        self.syncs += 1
        self.durable = len(self.events)


class MemoryTicket:
    def __init__(self, sink: MemoryAudit, end: int) -> None:
        self.sink, self.end = sink, end
        self.started = False

    def start_sync(self) -> None:
        self.started = True

    def wait_durable(self) -> None:
        self.sink.sync_through(self.end)


@pytest.fixture
def memory_audit() -> MemoryAudit:
    return MemoryAudit()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real server (TLS, echo + minilm + test models) shared by the end-to-end tests."""
    from support.server import server_env, start_server

    base = tmp_path_factory.mktemp("shared-server")
    signal_dir = base / "signals"
    signal_dir.mkdir()
    env = server_env(CLEANROOM_TEST_SIGNAL_DIR=str(signal_dir), TMPDIR=str(base / "tmp"))
    (base / "tmp").mkdir()
    server = start_server(
        base / "data",
        "--models",
        # benchmarks/gpu/check.sh sets "echo" on a GPU image without the minilm weights package
        os.environ.get("CLEANROOM_TEST_MODELS", "echo,minilm"),
        "--model",
        "hold=support.hold_model:hold_factory",
        "--model",
        "double=support.hold_model:double_factory",
        "--model",
        "picky=support.hold_model:picky_factory",
        env=env,
    )
    server.signal_dir = signal_dir  # type: ignore[attr-defined]
    server.tmp_dir = base / "tmp"  # type: ignore[attr-defined]
    server.create_tenant("alpha")
    server.create_tenant("beta")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
