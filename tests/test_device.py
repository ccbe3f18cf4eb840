"""Device discovery on recorded NVML/torch answers (fakes), and on this CPU-only host for real."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cleanroom.runtime.device import CC_ENVIRONMENTS, describe_cpu, discover

UUID0 = "GPU-5a1e1c9d-7f3b-4e2a-9c1d-0b8e2f4a6c11"
UUID1 = "GPU-0c2d4e6f-8a9b-4c1d-2e3f-405162738495"


class NVMLNotSupported(Exception):
    pass


def fake_nvml(*, cc: tuple[int, int, int] | None = (2, 1, 0), ecc: bool = True, mig: bool = False) -> Any:
    devices = [
        {"uuid": UUID1, "name": b"NVIDIA H200", "total": 150_000_000_000, "free": 149_000_000_000},
        {"uuid": UUID0, "name": "NVIDIA H200", "total": 150_000_000_000, "free": 120_000_000_000},
    ]
    calls: list[str] = []

    def conf_state() -> Any:
        if cc is None:
            raise NVMLNotSupported("Not Supported")
        env, feature, devtools = cc
        return SimpleNamespace(environment=env, ccFeature=feature, devToolsMode=devtools)

    def ecc_mode(h: int) -> list[int]:
        if not ecc:
            raise NVMLNotSupported("Not Supported")
        return [1, 1]

    return SimpleNamespace(
        calls=calls,
        nvmlInit=lambda: calls.append("init"),
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlSystemGetDriverVersion=lambda: "580.159.03",
        nvmlSystemGetConfComputeState=conf_state,
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUUID=lambda h: devices[h]["uuid"],
        nvmlDeviceGetName=lambda h: devices[h]["name"],
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=devices[h]["total"], free=devices[h]["free"], used=0),
        nvmlDeviceGetEccMode=ecc_mode,
        nvmlDeviceGetMigMode=lambda h: [int(mig), int(mig)],
    )


def fake_torch(*, n: int = 1, backend: str = "native", uuid: str | None = UUID0[4:]) -> Any:
    props = SimpleNamespace(
        name="NVIDIA H200", total_memory=150_000_000_000, major=9, minor=0, multi_processor_count=132, uuid=uuid
    )
    cuda = SimpleNamespace(
        is_available=lambda: n > 0,
        device_count=lambda: n,
        get_device_properties=lambda i: props,
        get_allocator_backend=lambda: backend,
    )
    return SimpleNamespace(cuda=cuda, __version__="2.11.0+cu130", version=SimpleNamespace(cuda="13.0"))


def test_gpu_host_with_confidential_computing() -> None:
    nvml = fake_nvml()
    report = discover(torch_module=fake_torch(), nvml_loader=lambda: nvml)
    assert report.kind == "cuda" and report.nvml == "ok"
    (gpu,) = report.gpus
    # matched by UUID, not by position: NVML lists this GPU second
    assert gpu.uuid == UUID0 and gpu.free_memory_bytes == 120_000_000_000
    assert gpu.compute_capability == (9, 0) and gpu.multiprocessors == 132
    assert gpu.ecc_enabled is True and gpu.mig_enabled is False
    cc = report.confidential_computing
    assert cc is not None and cc.enabled and cc.environment == "production" and cc.dev_tools_mode is False
    assert report.driver_version == "580.159.03" and report.cuda_version == "13.0"
    assert report.scrub_supported
    assert nvml.calls == ["init", "shutdown"]
    json.dumps(report.to_dict())  # /readyz and doctor --json serialize it


def test_unsupported_fields_become_none_with_notes() -> None:
    report = discover(
        torch_module=fake_torch(backend="cudaMallocAsync"), nvml_loader=lambda: fake_nvml(cc=None, ecc=False, mig=True)
    )
    gpu = report.gpus[0]
    assert gpu.ecc_enabled is None and gpu.mig_enabled is True
    cc = report.confidential_computing
    assert cc is not None and cc.enabled is None and cc.error and "Not Supported" in cc.error
    assert not report.scrub_supported
    assert any("cudaMallocAsync" in n for n in report.notes)


def test_dev_tools_mode_is_flagged() -> None:
    report = discover(torch_module=fake_torch(), nvml_loader=lambda: fake_nvml(cc=(1, 1, 1)))
    assert report.confidential_computing is not None
    assert report.confidential_computing.environment == CC_ENVIRONMENTS[1]
    assert any("dev-tools" in n for n in report.notes)


def test_no_uuid_from_torch_falls_back_to_position() -> None:
    report = discover(torch_module=fake_torch(uuid=None), nvml_loader=fake_nvml)
    assert report.gpus[0].uuid == UUID1


def test_nvml_missing_or_broken() -> None:
    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    def broken() -> Any:
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    assert discover(torch_module=fake_torch(n=0), nvml_loader=missing).nvml == "not installed"
    r = discover(torch_module=fake_torch(n=0), nvml_loader=broken)
    assert r.nvml.startswith("error: OSError") and r.kind == "cpu" and r.confidential_computing is None


def test_nvml_sees_gpus_torch_does_not() -> None:
    r = discover(torch_module=fake_torch(n=0), nvml_loader=fake_nvml)
    assert r.kind == "cpu" and any("CPU fallback" in n for n in r.notes)


def test_this_cpu_host() -> None:
    import torch

    report = discover()  # the real torch and whatever NVML this host has
    if torch.cuda.is_available():
        assert report.kind == "cuda" and len(report.gpus) == torch.cuda.device_count()
    else:
        assert report.kind == "cpu" and report.gpus == ()
    assert report.cpu.logical_cores and report.cpu.logical_cores >= 1
    assert report.cpu.memory_total_bytes and report.cpu.memory_total_bytes > 1 << 28
    assert report.torch_version and report.scrub_supported
    d = report.to_dict()
    assert d["kind"] == report.kind and len(d["gpus"]) == len(report.gpus) and json.dumps(d)


def test_describe_cpu_reads_proc(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    (tmp_path / "meminfo").write_text("MemTotal:       263842140 kB\nMemFree: 1 kB\n")
    info = describe_cpu(tmp_path)
    assert info.model == "AMD EPYC 9654 96-Core Processor"
    assert info.memory_total_bytes == 263842140 * 1024


def test_mig_device_matched_by_its_own_uuid() -> None:
    # Under MIG, torch sees a MIG device: its UUID is the MIG device's ("MIG-..."), not the parent GPU's.
    mig_uuid = "MIG-7b1f0e2a-3c4d-5e6f-8091-a2b3c4d5e6f7"
    nvml = fake_nvml(mig=True)
    nvml.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7 if h == 1 else 0

    def mig_handle(parent: int, j: int) -> Any:
        if j != 2:
            raise NVMLNotSupported("Not Found")  # empty MIG slots
        return ("mig", parent, j)

    parent_uuid = nvml.nvmlDeviceGetUUID
    parent_mem = nvml.nvmlDeviceGetMemoryInfo
    nvml.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    nvml.nvmlDeviceGetUUID = lambda h: mig_uuid if isinstance(h, tuple) else parent_uuid(h)
    nvml.nvmlDeviceGetMemoryInfo = lambda h: (
        SimpleNamespace(total=35_000_000_000, free=34_000_000_000, used=0) if isinstance(h, tuple) else parent_mem(h)
    )
    report = discover(torch_module=fake_torch(uuid=mig_uuid[4:]), nvml_loader=lambda: nvml)
    (gpu,) = report.gpus
    assert gpu.uuid == mig_uuid and gpu.mig_enabled is True and gpu.ecc_enabled is True
    assert gpu.free_memory_bytes == 34_000_000_000


def test_one_gpu_nvml_cannot_open_does_not_hide_the_others() -> None:
    # nvmlDeviceGetHandleByIndex raises for a GPU outside the container's cgroup (NoPermission) or one
    # that fell off the bus (GpuIsLost); that used to discard NVML's facts for every GPU.
    nvml = fake_nvml()

    def handle(i: int) -> int:
        if i == 0:
            raise NVMLNotSupported("Insufficient Permissions")
        return i

    nvml.nvmlDeviceGetHandleByIndex = handle
    report = discover(torch_module=fake_torch(), nvml_loader=lambda: nvml)
    (gpu,) = report.gpus
    assert report.nvml == "ok" and gpu.uuid == UUID0 and gpu.ecc_enabled is True and gpu.mig_enabled is False
    assert nvml.calls == ["init", "shutdown"]


def test_torch_device_query_errors_become_a_note() -> None:
    # After a sticky CUDA error every torch.cuda query raises; discover() runs at server start and in
    # /readyz and doctor, and used to let that RuntimeError out.
    torch = fake_torch()

    def broken(i: int) -> Any:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    torch.cuda.get_device_properties = broken
    report = discover(torch_module=torch, nvml_loader=lambda: fake_nvml())
    assert report.kind == "cuda" and report.gpus == () and report.allocator_backend is None
    assert not report.scrub_supported and any("illegal memory access" in n for n in report.notes)
    json.dumps(report.to_dict())
