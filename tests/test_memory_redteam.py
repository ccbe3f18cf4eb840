"""Red team of invariant 1's memory half (DESIGN §2.1-3, §4): SecureBuffer and the end of a request.

Attacks: a model that keeps its input (a view, a slice, `.numpy()`, a memoryview) past the request and
reads it later, from another thread too; close twice, from two threads, after fork; mlock past
RLIMIT_MEMLOCK (8 MiB, 0) with many buffers; mmap itself failing (RLIMIT_AS); the bytes of a closed buffer
read back through /proc/self/mem; tensors the session must zero that `zero_()` cannot; temporaries a
model drops (who wipes them?); sizes around page boundaries. Anything that could crash runs in a
subprocess, so a SIGSEGV fails a test instead of killing pytest.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save

from cleanroom.errors import DeviceQuarantined, InvalidPayload, SecureMemoryError
from cleanroom.memory.hardening import hardened_environ
from cleanroom.memory.secure_buffer import PAGE_SIZE, SecureAllocator, SecureBuffer
from cleanroom.runtime.models import EchoModel, RequestScope, UserModel
from cleanroom.runtime.session import RequestOpener, run_model, zero_scope
from cleanroom.runtime.tensors import read_safetensors, write_safetensors
from cleanroom.scrubbers.cpu import CpuScrubber
from support.memscan import scan_process

TESTS = Path(__file__).parent
UNPRIVILEGED = ["setpriv", "--bounding-set", "-ipc_lock", "--inh-caps", "-ipc_lock", "prlimit"]


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    return env


def run_child(code: str, *, prefix: list[str] = (), timeout_s: float = 60) -> dict[str, Any]:  # type: ignore[assignment]
    """Run `code` in a fresh interpreter; a signal (SIGSEGV) or an assertion fails the test. The child
    prints one JSON line last."""
    result = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=child_env()
    )
    assert result.returncode == 0, f"child died with {result.returncode}:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def opener(allocator: SecureAllocator) -> RequestOpener:
    return RequestOpener(
        registry=None,  # type: ignore[arg-type]
        keyring=None,  # type: ignore[arg-type]
        replay=None,  # type: ignore[arg-type]
        allocator=allocator,
        audit=None,  # type: ignore[arg-type]
        scrubber=CpuScrubber(trim_heap=False),
    )


# --- use after release ---------------------------------------------------------------------------------

USE_AFTER_RELEASE = r"""
import gc, json, re, threading
import numpy as np, torch
from safetensors.torch import save
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.models import EchoModel, RequestScope, UserModel
from cleanroom.runtime.session import RequestOpener, run_model
from cleanroom.scrubbers.cpu import CpuScrubber
from support import memory_models

allocator = SecureAllocator()
opener = RequestOpener(registry=None, keyring=None, replay=None, allocator=allocator, audit=None,
                       scrubber=CpuScrubber(trim_heap=False))

def request(model, plaintext):
    scope = RequestScope(allocator)
    payload = scope.new_buffer(len(plaintext))
    payload.view()[:] = plaintext
    try:
        answer = run_model(model, payload, scope)
        out = bytes(answer)
        del answer
        return out, payload.address
    finally:
        opener.end_request(scope)

def mapped(address):
    with open("/proc/self/maps") as maps:
        return any(int(line.split("-")[0], 16) == address for line in maps)

secret = torch.arange(1, 65, dtype=torch.uint8) + 100
keeper = UserModel("keeper", "support.memory_models:keeper")
answer, first = request(keeper, save({"x": secret}))
assert secret.numpy().tobytes() in answer  # the model did see (and echo) the plaintext
gc.collect()
first_mapped = mapped(first)
kept = dict(memory_models.KEPT)  # the first request's references: the next request replaces the entries
zero_now = {k: not np.frombuffer(v, dtype=np.uint8).any() if k == "view" else not bool(np.asarray(v).any())
            for k, v in kept.items()}

# another thread reads (and writes) the kept tensor after the request ended, while the next request runs
seen = []
def reader():
    for _ in range(2000):
        seen.append(int(kept["tensor"].sum()) + int(kept["array"].sum()))
    kept["flat"][0] = 1  # writable: it is the model's own memory now, not anyone's plaintext
thread = threading.Thread(target=reader)
thread.start()
answer2, second = request(keeper, save({"x": secret + 1}))   # the next request replaces KEPT
thread.join()
kept = None
gc.collect()
first_released, second_mapped = not mapped(first), mapped(second)

# echo returns a copy; a SecureBuffer-level view/numpy/memoryview kept past close reads zeros
echo_answer, _ = request(EchoModel(), b"echo secret")
buf = allocator.allocate(3 * 4096 + 5)
buf.view()[:6] = b"secret"
t = buf.as_tensor(); a = t.numpy(); v = buf.view(); n = np.frombuffer(v, dtype=np.uint8)
buf.close(); buf.close()
after_close = [bytes(t[:6].numpy()), bytes(a[:6]), bytes(v[:6]), bytes(n[:6])]
address = buf.address
del buf; gc.collect()
alive_while_viewed = mapped(address)
del t, a, v, n; gc.collect()
memory_models.KEPT.clear(); gc.collect()
print(json.dumps({
    "zero_now": zero_now, "reader_nonzero": sum(1 for s in seen if s), "first_mapped": first_mapped,
    "first_released": first_released, "second_mapped": second_mapped,
    "echo": echo_answer.decode(), "after_close": [x.hex() for x in after_close],
    "alive_while_viewed": alive_while_viewed, "unmapped_at_last_reference": not mapped(address),
    "second_unmapped_at_last_reference": not mapped(second),
    "stats": [allocator.stats.locked_bytes, allocator.stats.buffers_open],
}))
"""


def test_a_model_that_keeps_its_input_reads_zeros_and_never_crashes_the_server() -> None:
    report = run_child(USE_AFTER_RELEASE)
    assert report["zero_now"] == dict.fromkeys(["tensor", "slice", "array", "view", "flat"], True)
    assert report["reader_nonzero"] == 0  # the other thread only ever read zeros
    assert report["first_mapped"]  # zeroed, but the mapping lives while the model holds it: no SIGSEGV
    assert report["echo"] == "echo secret"
    assert report["after_close"] == ["00" * 6] * 4
    assert report["alive_while_viewed"] and report["unmapped_at_last_reference"]
    assert report["first_released"] and report["second_mapped"]  # the next request replaced what it kept
    assert report["second_unmapped_at_last_reference"]
    assert report["stats"] == [0, 0]


def test_a_model_writing_into_its_kept_input_later_is_caught_before_the_next_tenant() -> None:
    """The kept tensor is the model's memory now; if it writes there after the request (another request's
    data, say), the next between-tenant scrub finds the ended request's memory non-zero and fails closed.
    Only the next one: each scrub forgets the storages it verified, so a later write goes unseen."""
    allocator = SecureAllocator(lock=False)
    runner = opener(allocator)
    scope = RequestScope(allocator)
    plaintext = safetensors_bytes(b"\x42" * 64)
    payload = scope.new_buffer(len(plaintext))
    payload.view()[:] = plaintext
    run_model(UserModel("keeper", "support.memory_models:keeper"), payload, scope)
    runner.end_request(scope)
    from support import memory_models

    kept = memory_models.KEPT.pop("tensor")
    memory_models.KEPT.clear()
    assert runner.scrubber is not None
    kept[0] = 7
    with pytest.raises(DeviceQuarantined):
        runner.scrubber.between_tenant_scrub()


CLOSE_RACE = r"""
import json, threading
from cleanroom.memory.secure_buffer import SecureAllocator
allocator = SecureAllocator()
stop = threading.Event()
reads = []
buffers = [allocator.allocate(64 * 1024) for _ in range(50)]
tensors = [b.as_tensor() for b in buffers]
for b in buffers:
    b.view()[:] = b"\x5a" * len(b)
def reader():
    while not stop.is_set():
        reads.append(sum(int(t[::4096].sum()) for t in tensors))
def closer():
    for b in buffers:
        b.close()
threads = [threading.Thread(target=reader)] + [threading.Thread(target=closer) for _ in range(3)]
for th in threads: th.start()
for th in threads[1:]: th.join()
stop.set(); threads[0].join()
final = sum(int(t.sum()) for t in tensors)
print(json.dumps({"final": final, "reads": len(reads), "stats": [allocator.stats.locked_bytes,
                  allocator.stats.buffers_open, allocator.stats.lock_failures]}))
"""


def test_close_from_three_threads_while_a_fourth_reads() -> None:
    report = run_child(CLOSE_RACE)
    assert report["final"] == 0 and report["reads"] > 0
    assert report["stats"] == [0, 0, 0]  # each buffer unlocked and counted once


FORK = r"""
import json, os
from cleanroom.memory.secure_buffer import SecureAllocator
allocator = SecureAllocator()
buf = allocator.allocate(10_000)
buf.view()[:] = b"\x77" * 10_000
tensor = buf.as_tensor()
pid = os.fork()
if pid == 0:  # MADV_WIPEONFORK: the child sees zero-filled pages; closing them there must not crash
    ok = not tensor.any() and buf.is_zero()
    buf.close(); buf.close()
    os._exit(0 if ok and not tensor.any() else 3)
_, status = os.waitpid(pid, 0)
intact = bytes(buf.view()[:4]) == b"\x77" * 4
buf.close()
print(json.dumps({"child_status": status, "parent_intact": intact, "parent_zero": not tensor.any()}))
"""


def test_a_forked_child_sees_zeros_and_can_close_the_buffer() -> None:
    report = run_child(FORK)
    assert report == {"child_status": 0, "parent_intact": True, "parent_zero": True}


def test_concurrent_close_counts_each_buffer_once() -> None:
    allocator = SecureAllocator()
    for _ in range(200):
        buffer = allocator.allocate(100)
        barrier = threading.Barrier(3)

        def close(b: SecureBuffer = buffer, w: threading.Barrier = barrier) -> None:
            w.wait()
            b.close()

        threads = [threading.Thread(target=close) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert (allocator.stats.locked_bytes, allocator.stats.buffers_open) == (0, 0)


# --- mlock limits -------------------------------------------------------------------------------------

MLOCK_PRESSURE = r"""
import json, logging, threading
import torch
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.models import EchoModel, RequestScope
from cleanroom.runtime.session import RequestOpener, run_model
from cleanroom.scrubbers.cpu import CpuScrubber

records = []
class Keep(logging.Handler):
    def emit(self, record): records.append(record.getMessage())
logging.getLogger().addHandler(Keep(level=logging.INFO))
logging.getLogger().setLevel(logging.DEBUG)

allocator = SecureAllocator()
opener = RequestOpener(registry=None, keyring=None, replay=None, allocator=allocator, audit=None,
                       scrubber=CpuScrubber(trim_heap=False))
MiB = 1024 * 1024
peak = [0]
def flags(address):
    lines = open("/proc/self/smaps").read().splitlines()
    for i, line in enumerate(lines):
        start, _, end = line.split()[0].partition("-")
        if end and int(start, 16) <= address < int(end, 16):  # neighbours with the same flags merge
            return next(e for e in lines[i:] if e.startswith("VmFlags:"))
held = [allocator.allocate(3 * MiB) for _ in range(6)] + [allocator.allocate(16 * MiB)]
peak[0] = allocator.stats.locked_bytes
unlocked = [b for b in held if not b.locked]
vmflags = flags(unlocked[0].address) if unlocked else ""
for i, b in enumerate(held):
    b.view()[-3:] = bytes([i, i, i])
usable = all(bytes(b.view()[-3:]) == bytes([i, i, i]) for i, b in enumerate(held))

failures = []
def request(size):
    try:
        scope = RequestScope(allocator)
        payload = scope.new_buffer(size)
        payload.view()[:] = b"\x42" * size
        try:
            ok = bytes(run_model(EchoModel(), payload, scope)) == b"\x42" * size
        finally:
            opener.end_request(scope)
        if not ok:
            failures.append("wrong answer")
    except Exception as exc:
        failures.append(repr(exc))
threads = [threading.Thread(target=request, args=(s,)) for s in [2 * MiB] * 8 + [10 * MiB, 1, 4097]]
for t in threads: t.start()
for t in threads: t.join()
for b in held: b.close()
s = allocator.stats
print(json.dumps({"usable": usable, "request_failures": failures, "lock_failures": s.lock_failures,
                  "last_error": s.last_error, "locked_bytes": s.locked_bytes, "buffers_open": s.buffers_open,
                  "peak_locked": peak[0], "logged": records, "unlocked_flags": vmflags,
                  "all_zero": all(b.is_zero() for b in held)}))
"""


@pytest.mark.parametrize("limit_bytes", [8 * 1024 * 1024, 0])
def test_mlock_past_the_limit_degrades_is_counted_not_logged_and_the_counter_returns_to_zero(
    limit_bytes: int,
) -> None:
    report = run_child(MLOCK_PRESSURE, prefix=[*UNPRIVILEGED, f"--memlock={limit_bytes}:{limit_bytes}"])
    assert report["usable"] and report["request_failures"] == []
    assert report["peak_locked"] <= limit_bytes
    assert report["lock_failures"] >= (7 if limit_bytes == 0 else 4)  # the 16 MiB one never fits
    assert report["last_error"] in ("ENOMEM", "EPERM", "EAGAIN")
    assert (report["locked_bytes"], report["buffers_open"]) == (0, 0)
    assert report["logged"] == []  # counted in the metric and reported once at start-up, not per buffer
    assert " dd" in report["unlocked_flags"] and " wf" in report["unlocked_flags"]
    assert " lo" not in report["unlocked_flags"]
    assert report["all_zero"]


def test_locked_bytes_do_not_grow_when_locking_is_disabled() -> None:
    """With `mlock = false` the unlocked buffers were counted as locked and never uncounted: the
    cleanroom_locked_bytes gauge grew by every request's size, forever."""
    allocator = SecureAllocator(lock=False)
    for size in (1, 4096, 100_000):
        with allocator.allocate(size) as buffer:
            assert not buffer.locked
            assert allocator.stats.locked_bytes == 0
    assert allocator.describe()["locked_bytes"] == 0 and allocator.stats.lock_failures == 0
    assert allocator.stats.buffers_open == 0


MMAP_FAILS = r"""
import json, resource
import torch
from cleanroom.errors import SecureMemoryError
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.models import RequestScope
allocator = SecureAllocator()
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize:")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 64 * 1024 * 1024, resource.RLIM_INFINITY))
scope = RequestScope(allocator)
try:
    scope.new_buffer(512 * 1024 * 1024)
    outcome = {"raised": None}
except SecureMemoryError as exc:
    outcome = {"raised": type(exc).__name__, "status": exc.status, "code": exc.code, "message": str(exc)}
small = scope.new_buffer(1000)
small.view()[:3] = b"abc"
outcome["small_ok"] = bytes(small.view()[:3]) == b"abc"
small.close()
outcome["stats"] = [allocator.stats.buffers_open, allocator.stats.locked_bytes, len(scope.buffers)]
print(json.dumps(outcome))
"""


def test_mmap_failure_is_a_clear_503_and_leaves_nothing_counted() -> None:
    report = run_child(MMAP_FAILS)
    assert report["raised"] == "SecureMemoryError"
    assert (report["status"], report["code"]) == (503, "secure_memory_unavailable")
    assert "536870912 bytes" in report["message"]
    assert report["small_ok"] and report["stats"] == [0, 0, 1]


# --- zeroing proof ------------------------------------------------------------------------------------


def test_a_closed_buffer_reads_zero_through_proc_self_mem_and_is_unmapped_at_the_last_reference() -> None:
    buffer = SecureBuffer(3 * PAGE_SIZE + 1)
    buffer.view()[:] = b"\xc3" * len(buffer)
    keep = buffer.as_tensor()[PAGE_SIZE:]  # keeps the mapping alive after close
    address, mapped = buffer.address, 4 * PAGE_SIZE
    buffer.close()
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        assert os.pread(fd, mapped, address) == bytes(mapped)
        del keep, buffer
        with pytest.raises(OSError) as gone:  # unmapped: nothing left there to read
            os.pread(fd, mapped, address)
        assert gone.value.errno in (errno.EIO, errno.EFAULT)
    finally:
        os.close(fd)


def test_session_zeroing_reaches_quantized_sparse_and_nested_tensors_and_always_closes_buffers() -> None:
    """`zero_()` raises on a quantized tensor (the payload buffer then stayed open, plaintext in place)
    and only drops a sparse tensor's entries (its values kept the plaintext)."""
    allocator = SecureAllocator(lock=False)
    scope = RequestScope(allocator)
    buffer = scope.new_buffer(100)
    buffer.view()[:] = b"\x42" * 100
    dense = torch.full((8,), 42.0)
    with warnings.catch_warnings():  # quantized and nested tensors: deprecated or prototype, still usable
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(dense, 1.0, 0, torch.quint8)
        nested = torch.nested.nested_tensor([dense[:3], dense[:5]])
    sparse = dense.to_sparse()
    values = sparse._values()
    scope.track(quantized, sparse, nested)
    zero_scope(scope)
    assert buffer.closed and scope.buffers == []
    assert not quantized.int_repr().any()
    assert not values.any()
    assert not nested.values().any()


def test_a_user_model_answering_with_a_quantized_tensor_leaves_no_open_buffer() -> None:
    allocator = SecureAllocator(lock=False)
    scope = RequestScope(allocator)
    plaintext = safetensors_bytes(b"\x42" * 256)
    payload = scope.new_buffer(len(plaintext))
    payload.view()[:] = plaintext
    model = UserModel("quantizer", "support.memory_models:quantizer")
    with pytest.raises(InvalidPayload):
        run_model(model, payload, scope)
    tracked = list(scope.tensors)
    opener(allocator).end_request(scope)  # the scrubber refuses the layout; the session zeroes it: no 500
    assert payload.closed and payload.is_zero() and scope.buffers == []
    assert allocator.stats.buffers_open == 0
    for tensor in tracked:
        dense = tensor.int_repr() if tensor.is_quantized else tensor.to_dense() if tensor.is_sparse else tensor
        assert not dense.any()


def safetensors_bytes(data: bytes, width: int = 0) -> bytes:
    """`x` (uint8 `data`) and `width` (an int64 scalar) as a safetensors blob, built by hand."""
    end = len(data) + 8
    specs = {
        "width": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
        "x": {"dtype": "U8", "shape": [len(data)], "data_offsets": [8, end]},
    }
    header = json.dumps(specs).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack("<q", width) + data


MODEL_IN_A_CHILD = r"""
import json, os, sys
import torch
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.models import RequestScope, UserModel
from cleanroom.runtime.session import RequestOpener, run_model
from cleanroom.scrubbers.cpu import CpuScrubber
allocator = SecureAllocator()
opener = RequestOpener(registry=None, keyring=None, replay=None, allocator=allocator, audit=None,
                       scrubber=CpuScrubber())
model = UserModel(sys.argv[2], "support.memory_models:" + sys.argv[2])
size = int(sys.argv[1])
scope = RequestScope(allocator)
payload = scope.new_buffer(size)
view, done = payload.view(), 0
while done < size:  # straight from the pipe into the buffer: no heap copy of the plaintext here
    done += os.readv(0, [view[done:]])
del view
try:
    answer = run_model(model, payload, scope)
    answer_bytes = len(answer)  # not bytes(answer): that copy would be ours, not the runtime's
    del answer
finally:
    opener.end_request(scope)
opener.scrubber.between_tenant_scrub()
print(json.dumps({"answer_bytes": answer_bytes}), flush=True)
sys.stdin.readline()  # stay alive while the parent scans us
"""


def scan_after_model(model: str, env: dict[str, str]) -> int:
    """Run one request of `model` over a marker payload in a fresh child, then count the marker's copies
    in the child's memory (the request has ended; the child waits to be scanned)."""
    marker = ("crmark" + secrets.token_hex(12)).encode()
    data = (marker + b"|") * (24 * 1024 // (len(marker) + 1))
    payload = safetensors_bytes(data, width=len(marker))
    child = subprocess.Popen(
        [sys.executable, "-c", MODEL_IN_A_CHILD, str(len(payload)), model],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(env),
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(payload)
        child.stdin.flush()
        line = child.stdout.readline()
        assert line, child.stderr.read().decode() if child.stderr else ""
        assert json.loads(line)["answer_bytes"] > 0
        return sum(scan_process(child.pid, [marker]).values())
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=30)


def unhardened() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "PYTHONMALLOC")}


def test_temporaries_a_model_drops_are_wiped_by_the_hardened_allocator_not_by_the_scrub() -> None:
    """The end-of-request scrub reaches only what the model tracked (and the request's buffers); a copy
    the model made and dropped is freed to glibc unzeroed. The allocator hardening that `serve` re-execs
    with (DESIGN §4) is what wipes it: zero copies with it, copies left without it (the control)."""
    assert scan_after_model("dropper", hardened_environ(unhardened())) == 0
    assert scan_after_model("dropper", unhardened()) > 0  # the control: the scan sees what the scrub misses


def test_a_strided_answer_is_copied_into_its_secure_buffer_without_a_heap_copy() -> None:
    """`write_safetensors` made a contiguous heap copy of a non-contiguous answer and freed it unzeroed:
    in a process without the allocator hardening (embedded use, the ASGI middleware, Ray) the answer's
    plaintext stayed in the heap after the request. Now the tensor is copied straight into the buffer."""
    assert scan_after_model("slicer", unhardened()) == 0


def strided_answers() -> dict[str, torch.Tensor]:
    x = torch.arange(60, dtype=torch.float32).view(6, 10)
    return {
        "columns": x[:, :7],
        "transposed": x.t(),
        "bool": (x > 5)[:, 1:3],
        "int8": torch.arange(9, dtype=torch.int8).view(3, 3).t(),
        "bf16": x.to(torch.bfloat16)[::2],
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(5.0),
        "f64": x.double()[1:, ::3],
        "grad": torch.ones(4, requires_grad=True) * 2,
    }


@pytest.mark.parametrize("name", list(strided_answers()))
def test_strided_answers_are_written_byte_for_byte_like_the_library(name: str) -> None:
    tensor = strided_answers()[name]
    with write_safetensors({name: tensor}, SecureAllocator(lock=False)) as buffer:
        assert bytes(buffer.view()) == save({name: tensor.detach().contiguous()})


# --- sizes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 1, 3 * PAGE_SIZE + 1])
def test_payload_sizes_around_page_boundaries(size: int) -> None:
    allocator = SecureAllocator()
    scope = RequestScope(allocator)
    payload = scope.new_buffer(size)
    assert len(payload.view()) == size
    assert payload.locked and allocator.stats.locked_bytes == max(1, -(-size // PAGE_SIZE)) * PAGE_SIZE
    plaintext = bytes((i * 7 + 1) % 251 + 1 for i in range(size))
    payload.view()[:] = plaintext
    with pytest.raises((ValueError, IndexError, TypeError)):  # the view ends at size_bytes, not the page
        payload.view()[size] = 1
    assert bytes(run_model(EchoModel(), payload, scope)) == plaintext
    address = payload.address
    keep = payload.as_tensor()
    opener(allocator).end_request(scope)
    assert payload.closed and not keep.any()
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        if size:
            assert os.pread(fd, PAGE_SIZE, address) == bytes(PAGE_SIZE)
    finally:
        os.close(fd)
    assert (allocator.stats.locked_bytes, allocator.stats.buffers_open) == (0, 0)


def test_a_2_gib_size_claim_inside_a_payload_allocates_nothing() -> None:
    allocator = SecureAllocator()
    claim = json.dumps({"x": {"dtype": "U8", "shape": [1 << 31], "data_offsets": [0, 1 << 31]}}).encode()
    with SecureBuffer(8 + len(claim) + 16) as buffer:
        buffer.view()[: 8 + len(claim)] = struct.pack("<Q", len(claim)) + claim
        with pytest.raises(InvalidPayload):
            read_safetensors(buffer.view())
        header_claim = bytearray(buffer.view())
        header_claim[:8] = struct.pack("<Q", 1 << 31)
        with pytest.raises(InvalidPayload):
            read_safetensors(memoryview(header_claim))
    assert allocator.stats.buffers_open == 0
    with pytest.raises(ValueError):
        SecureBuffer(-1)


def test_mmap_errors_are_secure_memory_errors_not_oserrors() -> None:
    """An absurd size (more than the address space) fails like RLIMIT_AS does: 503, never an OSError."""
    with pytest.raises(SecureMemoryError) as failed:
        SecureBuffer(1 << 62, lock=False)
    assert failed.value.status == 503
