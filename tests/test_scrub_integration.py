"""The between-tenant scrub on the request path: when it runs, and failing closed when it cannot verify."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cleanroom.client import Client, ClientError
from cleanroom.config import Settings
from cleanroom.runtime.models import EchoModel, ModelRegistry
from cleanroom.scrubbers.base import ScrubReport
from cleanroom.scrubbers.cpu import CpuScrubber
from cleanroom.server.app import create_app
from cleanroom.server.services import build_services


class CountingScrubber(CpuScrubber):
    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.between = 0
        self.requests = 0
        self.plant_nonzero = False

    def zero_request(self, tensors=(), buffers=()) -> ScrubReport:  # type: ignore[no-untyped-def]
        self.requests += 1
        return super().zero_request(tensors, buffers)

    def between_tenant_scrub(self) -> ScrubReport:
        self.between += 1
        if self.plant_nonzero:  # what verification would find if zeroing had silently failed
            report = ScrubReport(device="cpu", kind="between_tenant", nonzero_bytes=1)
            self._fail_closed(report, "planted non-zero byte")
        return super().between_tenant_scrub()


@contextlib.contextmanager
def make(data_dir: Path, memory_audit, mode: str):  # type: ignore[no-untyped-def]
    services = build_services(
        Settings(data_dir=data_dir, models=["echo"], scrub_policy=mode),
        audit=memory_audit,
        models=ModelRegistry({"echo": EchoModel()}),
    )
    original = services.runtime.opener.scrubber
    scrubber = CountingScrubber(policy=services.runtime.gate.policy, on_quarantine=original._on_quarantine)
    services.runtime.opener.scrubber = scrubber
    with TestClient(create_app(services)) as http:  # one app, one running scheduler, shared by the clients
        clients = {}
        for name in ("a", "b"):
            created = services.tenants.create(name)
            client = Client("http://testserver", api_key=created.api_key)
            client._http = http
            clients[name] = client
        yield services, scrubber, clients, http
    services.close()


def test_scrub_runs_only_on_tenant_switch(data_dir: Path, memory_audit) -> None:
    with make(data_dir, memory_audit, "per_tenant_switch") as (services, scrubber, clients, _):
        for tenant in ["a", "a", "a", "b", "b", "a"]:
            assert clients[tenant].infer("echo", b"x" * 100) == b"x" * 100
        assert scrubber.requests == 6
        assert scrubber.between == 2  # a->b and b->a


def test_scrub_per_request_policy(data_dir: Path, memory_audit) -> None:
    with make(data_dir, memory_audit, "per_request") as (services, scrubber, clients, _):
        for tenant in ["a", "a", "b"]:
            clients[tenant].infer("echo", b"y")
        assert scrubber.between == 3  # after every request; the a->b switch finds the device clean


def test_failed_verification_quarantines_the_device(data_dir: Path, memory_audit) -> None:
    with make(data_dir, memory_audit, "per_tenant_switch") as ctx:
        quarantine_flow(memory_audit, *ctx)


def quarantine_flow(memory_audit, services, scrubber, clients, http) -> None:  # type: ignore[no-untyped-def]
    clients["a"].infer("echo", b"first")
    scrubber.plant_nonzero = True
    with pytest.raises(ClientError) as info:
        clients["b"].infer("echo", b"must not run")
    assert (info.value.status, info.value.code) == (503, "device_quarantined")
    scrubber.plant_nonzero = False
    with pytest.raises(ClientError) as info:  # stays quarantined: the memory state is unknown
        clients["a"].infer("echo", b"again")
    # the scheduler has no device left to place work on
    assert (info.value.status, info.value.code) == (503, "no_device_available")
    assert any(e["event"] == "alert.device_quarantined" for e in memory_audit.events)
