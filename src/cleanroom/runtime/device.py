"""Device discovery for `cleanroom doctor` and `/readyz`: what this process runs on, and how safely.

Sources, each optional and imported lazily: torch (which devices this process sees, their memory and
compute capability, the allocator backend the scrub needs) and NVML from the `nvidia-ml-py`
distribution (module `pynvml`; the separate `pynvml` PyPI package is a deprecated wrapper) for UUIDs,
ECC and MIG modes, and the confidential-computing state of the system
(`nvmlSystemGetConfComputeState`: feature on/off, environment, dev-tools mode). A CPU-only host gets a
description of its CPU and memory and of any CPU TEE guest device it exposes.

Discovery never raises: a missing library or a failing NVML call becomes `None` fields and a note, so
`/readyz` can always answer. Both sources are injectable for tests.

`discover(lazy_torch=True)` (`cleanroom doctor`) does not import torch (~1.6 s of a 2-core host's start-up)
on a host where it could not see a GPU anyway: no GPU device node and no GPU in NVML. Its version facts
then come from the installed files, unexecuted.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

CC_ENVIRONMENTS = {0: "unavailable", 1: "simulated", 2: "production"}
# Guest device nodes a confidential VM exposes (AMD SEV-SNP, Intel TDX).
CPU_TEE_DEVICES = {"/dev/sev-guest": "amd-sev-snp", "/dev/tdx_guest": "intel-tdx", "/dev/tdx-guest": "intel-tdx"}
# Without one of these torch.cuda sees no device: the NVIDIA driver's control node, WSL2's GPU paravirtual
# device, and the ROCm kernel driver (ROCm builds of torch answer through torch.cuda too).
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


@dataclass(frozen=True)
class ConfidentialComputing:
    """`nvmlSystemGetConfComputeState()` decoded; `None` fields when NVML could not say."""

    enabled: bool | None
    environment: str | None
    dev_tools_mode: bool | None
    error: str | None = None


@dataclass(frozen=True)
class GpuInfo:
    index: int  # as this process sees it (after CUDA_VISIBLE_DEVICES)
    name: str
    uuid: str | None
    total_memory_bytes: int
    free_memory_bytes: int | None
    compute_capability: tuple[int, int] | None
    multiprocessors: int | None
    ecc_enabled: bool | None
    mig_enabled: bool | None


@dataclass(frozen=True)
class CpuInfo:
    model: str | None
    logical_cores: int | None
    memory_total_bytes: int | None
    tee: str | None  # "amd-sev-snp", "intel-tdx" or None


@dataclass(frozen=True)
class DeviceReport:
    """Everything `cleanroom doctor` prints and `/readyz` returns about the hardware."""

    kind: Literal["cuda", "cpu"]
    gpus: tuple[GpuInfo, ...]
    cpu: CpuInfo
    torch_version: str | None
    cuda_version: str | None
    driver_version: str | None
    allocator_backend: str | None
    nvml: str  # "ok", "not installed" or "error: ..."
    confidential_computing: ConfidentialComputing | None
    notes: tuple[str, ...] = ()

    @property
    def scrub_supported(self) -> bool:
        """Whether the GPU between-tenant scrub can run here (CPU hosts use the CPU fallback)."""
        return self.kind == "cpu" or self.allocator_backend == "native"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["scrub_supported"] = self.scrub_supported
        for gpu in out["gpus"]:
            if gpu["compute_capability"] is not None:
                gpu["compute_capability"] = ".".join(map(str, gpu["compute_capability"]))
        out["notes"] = list(self.notes)
        out["gpus"] = list(out["gpus"])
        return out


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def gpu_device_present(nodes: tuple[str, ...] = GPU_DEVICE_NODES) -> bool:
    """Whether a GPU driver exposes a device node here: the cheap test of whether importing torch can
    tell us anything about a GPU."""
    return any(os.path.exists(node) for node in nodes)


def torch_facts_unimported() -> tuple[str | None, str | None]:
    """torch's version and CUDA version as an import would report them, read from the installed
    distribution and its generated `torch/version.py` (plain assignments), without running torch.
    (None, None) when torch is not installed."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None, None
    try:
        version: str | None = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        version = None
    cuda = None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        text = ""
    if match := re.search(r"^__version__\s*=\s*'([^']*)'", text, re.MULTILINE):
        version = match.group(1)  # the local label ("+cpu", "+cu130") is in here, not always in the metadata
    if match := re.search(r"^cuda(?:\s*:[^=]*)?\s*=\s*'([^']*)'", text, re.MULTILINE):
        cuda = match.group(1)
    return version, cuda


def _import_nvml() -> Any:
    import pynvml  # from the nvidia-ml-py distribution

    return pynvml


def describe_cpu(proc: Path = Path("/proc")) -> CpuInfo:
    model = None
    try:
        for line in (proc / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    tee = next((name for path, name in CPU_TEE_DEVICES.items() if os.path.exists(path)), None)
    return CpuInfo(model=model, logical_cores=os.cpu_count(), memory_total_bytes=mem, tee=tee)


def _nvml_call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # NVMLError_NotSupported and friends: the field is unknown, not fatal
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _cc_state(nvml: Any) -> ConfidentialComputing:
    try:
        state = nvml.nvmlSystemGetConfComputeState()
    except Exception as exc:  # old driver, or a GPU without CC support
        return ConfidentialComputing(None, None, None, error=f"{type(exc).__name__}: {exc}")
    return ConfidentialComputing(
        enabled=bool(state.ccFeature),
        environment=CC_ENVIRONMENTS.get(int(state.environment), f"unknown({state.environment})"),
        dev_tools_mode=bool(state.devToolsMode),
    )


def _nvml_devices(nvml: Any) -> dict[str, dict[str, Any]]:
    """NVML facts per GPU keyed by UUID ("GPU-..."), plus list order under key "#<n>".

    A GPU in MIG mode also lists its MIG devices, keyed by their UUIDs ("MIG-..."): under MIG, CUDA and
    torch see MIG devices, whose UUIDs are not the parent GPU's. ECC is the parent's setting.
    """
    out: dict[str, dict[str, Any]] = {}
    for i in range(int(nvml.nvmlDeviceGetCount())):
        # One GPU NVML cannot open (NVML_ERROR_NO_PERMISSION outside this container's cgroup, GPU_IS_LOST
        # after an Xid) must not hide the others: it is left out, its torch device shows unknown fields.
        h = _nvml_call(nvml.nvmlDeviceGetHandleByIndex, i)
        if h is None:
            continue
        uuid = _text(_nvml_call(nvml.nvmlDeviceGetUUID, h))
        mem = _nvml_call(nvml.nvmlDeviceGetMemoryInfo, h)
        ecc = _nvml_call(nvml.nvmlDeviceGetEccMode, h)
        mig = _nvml_call(nvml.nvmlDeviceGetMigMode, h)
        facts = {
            "uuid": uuid,
            "name": _text(_nvml_call(nvml.nvmlDeviceGetName, h)),
            "total": int(mem.total) if mem is not None else None,
            "free": int(mem.free) if mem is not None else None,
            "ecc": bool(ecc[0]) if ecc is not None else None,
            "mig": bool(mig[0]) if mig is not None else None,
        }
        out[f"#{i}"] = facts
        if uuid:
            out[uuid] = facts
        if facts["mig"]:
            out.update(_nvml_mig_devices(nvml, h, facts))
    return out


def _nvml_mig_devices(nvml: Any, parent: Any, parent_facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    count = (
        _nvml_call(nvml.nvmlDeviceGetMaxMigDeviceCount, parent)
        if hasattr(nvml, "nvmlDeviceGetMaxMigDeviceCount")
        else None
    )
    for j in range(int(count or 0)):
        h = _nvml_call(nvml.nvmlDeviceGetMigDeviceHandleByIndex, parent, j)  # empty slots raise NotFound
        uuid = None if h is None else _text(_nvml_call(nvml.nvmlDeviceGetUUID, h))
        if not uuid:
            continue
        mem = _nvml_call(nvml.nvmlDeviceGetMemoryInfo, h)
        out[uuid] = {
            **parent_facts,
            "uuid": uuid,
            "total": int(mem.total) if mem is not None else None,
            "free": int(mem.free) if mem is not None else None,
            "mig": True,
        }
    return out


def _torch_uuid_keys(uuid: Any) -> list[str]:
    """NVML keys a torch device UUID may have: torch prints the bare UUID; NVML prefixes "GPU-" for a GPU
    and "MIG-" for a MIG device."""
    text = str(uuid)
    if text.startswith(("GPU-", "MIG-")):
        return [text]
    return [f"GPU-{text}", f"MIG-{text}"]


def _torch_gpus(torch: Any, nv: dict[str, dict[str, Any]]) -> list[GpuInfo]:
    gpus: list[GpuInfo] = []
    for i in range(int(torch.cuda.device_count())):
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        keys = [] if uuid is None else _torch_uuid_keys(uuid)
        # Match by UUID (indices differ under CUDA_VISIBLE_DEVICES; MIG devices have their own); by
        # position only without one.
        uuid_s = next((k for k in keys if k in nv), keys[0] if keys else None)
        facts = nv.get(uuid_s, {}) if uuid_s else nv.get(f"#{i}", {})
        gpus.append(
            GpuInfo(
                index=i,
                name=str(props.name),
                uuid=uuid_s or facts.get("uuid"),
                total_memory_bytes=int(props.total_memory),
                free_memory_bytes=facts.get("free"),
                compute_capability=(int(props.major), int(props.minor)),
                multiprocessors=int(getattr(props, "multi_processor_count", 0)) or None,
                ecc_enabled=facts.get("ecc"),
                mig_enabled=facts.get("mig"),
            )
        )
    return gpus


def discover(
    *,
    torch_module: Any = None,
    nvml_loader: Callable[[], Any] | None = _import_nvml,
    lazy_torch: bool = False,
    gpu_nodes: tuple[str, ...] = GPU_DEVICE_NODES,
) -> DeviceReport:
    """Describe this host's devices. Pass `nvml_loader=None` to skip NVML entirely; `lazy_torch=True` to
    import torch only when it is already loaded or a GPU could be there (a device node in `gpu_nodes`, or
    a GPU in NVML): the same report on a CPU-only host, ~1.6 s sooner."""
    notes: list[str] = []
    nvml = None
    nvml_status = "not installed"
    if nvml_loader is not None:
        try:
            nvml = nvml_loader()
            nvml.nvmlInit()
            nvml_status = "ok"
        except ImportError:
            nvml = None
        except Exception as exc:  # no driver, no libnvidia-ml.so
            nvml, nvml_status = None, f"error: {type(exc).__name__}: {exc}"
    nv: dict[str, dict[str, Any]] = {}
    driver = cc = None
    if nvml is not None:
        try:
            driver = _text(_nvml_call(nvml.nvmlSystemGetDriverVersion))
            cc = _cc_state(nvml)
            nv = _nvml_devices(nvml)
        except Exception as exc:
            nvml_status = f"error: {type(exc).__name__}: {exc}"
        finally:
            _nvml_call(nvml.nvmlShutdown)

    torch = torch_module
    if torch is None and lazy_torch and "torch" not in sys.modules and not nv and not gpu_device_present(gpu_nodes):
        torch_version, cuda_version = torch_facts_unimported()  # no GPU to see: torch.cuda would say False
    else:
        torch = torch if torch is not None else _import_torch()
        torch_version = None if torch is None else str(torch.__version__)
        cuda_version = None if torch is None else _text(getattr(torch.version, "cuda", None))
    gpus: list[GpuInfo] = []
    backend = None
    cuda_ok = False
    try:
        cuda_ok = torch is not None and bool(torch.cuda.is_available())
        if cuda_ok:
            backend = str(torch.cuda.get_allocator_backend())
            gpus = _torch_gpus(torch, nv)
            if backend != "native":
                notes.append(f"allocator backend {backend!r}: the GPU scrub needs 'native'")
        elif nv:
            notes.append("NVML sees GPUs but torch has no CUDA: requests run on the CPU fallback")
    except Exception as exc:  # a device in a sticky CUDA error state raises from every query
        # kind stays "cuda" when torch said CUDA is there, with no backend: scrub_supported is False
        gpus, backend = [], None
        notes.append(f"torch could not query its CUDA devices: {type(exc).__name__}: {exc}")
    if torch_version is None:
        notes.append("torch is not installed")
    if cc is not None and cc.enabled and cc.dev_tools_mode:
        notes.append("confidential computing is on in dev-tools mode: not a production attestation state")
    return DeviceReport(
        kind="cuda" if gpus or cuda_ok else "cpu",
        gpus=tuple(gpus),
        cpu=describe_cpu(),
        torch_version=torch_version,
        cuda_version=cuda_version,
        driver_version=driver,
        allocator_backend=backend,
        nvml=nvml_status,
        confidential_computing=cc,
        notes=tuple(notes),
    )


__all__ = [
    "ConfidentialComputing",
    "CpuInfo",
    "DeviceReport",
    "GpuInfo",
    "describe_cpu",
    "discover",
    "gpu_device_present",
    "torch_facts_unimported",
]
