"""`SecureBuffer`: the only place a request's plaintext is allowed to live on the host.

An anonymous private mapping, so the bytes never share pages with the Python heap; `mlock`ed when the
process may (best-effort: RLIMIT_MEMLOCK is often 8 MiB for unprivileged users, and a failed lock is
counted and reported, never fatal); `MADV_DONTDUMP` keeps it out of core dumps and `MADV_WIPEONFORK` out of
children. It is zeroed on close, and a tensor made from it is a view (`torch.frombuffer`), not a copy.

Lifetime: use it as a context manager. `close()` always zeroes first; if a tensor or memoryview still
refers to the mapping the unmap is deferred to garbage collection, but the bytes are already zero.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cleanroom.errors import SecureMemoryError
from cleanroom.memory import _libc

if TYPE_CHECKING:
    import torch

log = logging.getLogger("cleanroom.memory")
PAGE_SIZE = mmap.PAGESIZE


@dataclass
class LockStats:
    """Counters the server exports as metrics and prints at start-up: how well locking is going."""

    enabled: bool = True
    locked_bytes: int = 0
    lock_failures: int = 0
    last_error: str = ""
    buffers_open: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_lock(self, size_bytes: int, err: int | None) -> None:
        """`err`: 0 if the buffer was locked, the errno if locking failed, None if it was not tried (locking
        disabled): only locked bytes are counted, so `locked_bytes` returns to 0 when all are closed."""
        with self._lock:
            self.buffers_open += 1
            if err == 0:
                self.locked_bytes += size_bytes
            elif err is not None:
                self.lock_failures += 1
                self.last_error = errno.errorcode.get(err, str(err))

    def record_unlock(self, size_bytes: int, was_locked: bool) -> None:
        with self._lock:
            self.buffers_open -= 1
            if was_locked:
                self.locked_bytes -= size_bytes


class SecureBuffer:
    """A fixed-size, page-aligned, zero-on-close buffer for plaintext."""

    def __init__(self, size_bytes: int, *, lock: bool = True, stats: LockStats | None = None) -> None:
        if size_bytes < 0:
            raise ValueError("size_bytes must be >= 0")
        # Two threads closing at once (a request's end and a watchdog) must not both unlock and count.
        self._close_lock = threading.Lock()
        self.size_bytes = size_bytes
        # mmap refuses length 0; a zero-length request still gets a page so every path is the same.
        self._mapped_bytes = max(PAGE_SIZE, -(-size_bytes // PAGE_SIZE) * PAGE_SIZE)
        try:
            self._map: mmap.mmap | None = mmap.mmap(
                -1,
                self._mapped_bytes,
                flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                prot=mmap.PROT_READ | mmap.PROT_WRITE,
            )
        except OSError as exc:
            raise SecureMemoryError(f"could not map {size_bytes} bytes of secure memory: {exc.strerror}") from exc
        anchor = ctypes.c_char.from_buffer(self._map)
        self.address = ctypes.addressof(anchor)
        del anchor  # drop the export so close() can unmap
        self._stats = stats
        self._advise()
        self.locked = False
        if lock and (stats is None or stats.enabled):
            err = _libc.mlock(self.address, self._mapped_bytes)
            self.locked = err == 0
            if stats is not None:
                stats.record_lock(self._mapped_bytes, err)
        elif stats is not None:
            stats.record_lock(self._mapped_bytes, errno.EPERM if lock else None)
        self._closed = False

    def _advise(self) -> None:
        assert self._map is not None
        for advice in (mmap.MADV_DONTDUMP, _libc.MADV_WIPEONFORK):
            try:
                self._map.madvise(advice)
            except OSError:  # old kernels lack WIPEONFORK; DONTDUMP is still applied
                log.debug("madvise(%d) not supported", advice)

    # --- access ---------------------------------------------------------------------------------
    def view(self) -> memoryview:
        """A writable view of exactly `size_bytes`; it must not outlive the buffer."""
        if self._map is None or self._closed:
            raise ValueError("SecureBuffer is closed")
        return memoryview(self._map)[: self.size_bytes]

    def as_tensor(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A zero-copy 1-D tensor over the buffer (uint8 unless `dtype` is given)."""
        import torch

        dtype = dtype or torch.uint8
        if self.size_bytes == 0:
            return torch.empty(0, dtype=dtype)
        # frombuffer warns that the buffer is writable and shared; that sharing is the point here.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.frombuffer(self.view(), dtype=dtype)

    def is_zero(self) -> bool:
        if self._map is None:
            return True
        import numpy as np

        return not np.frombuffer(self._map, dtype=np.uint8).any()

    # --- lifetime -------------------------------------------------------------------------------
    def zero(self) -> None:
        if self._map is not None:
            _libc.zero(self.address, self._mapped_bytes)

    def close(self) -> None:
        """Zero, unlock and unmap. Safe to call twice, and from two threads at once."""
        with self._close_lock:
            self._close_once()

    def _close_once(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.zero()
        if self._map is None:
            return
        if self.locked:
            _libc.munlock(self.address, self._mapped_bytes)
        if self._stats is not None:
            self._stats.record_unlock(self._mapped_bytes, self.locked)
        try:
            self._map.close()
        except BufferError:
            # A tensor or view still points here; the bytes are zero and GC will unmap.
            log.debug("secure buffer still exported at close; unmap deferred")
        self._map = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SecureBuffer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            log.error(
                "SecureBuffer of %d bytes was never closed; zeroing it at garbage collection",
                getattr(self, "size_bytes", -1),
            )
            self.close()

    def __len__(self) -> int:
        return self.size_bytes

    def __repr__(self) -> str:
        return f"SecureBuffer(size_bytes={self.size_bytes}, locked={self.locked}, closed={self._closed})"


class SecureAllocator:
    """Hands out SecureBuffers with shared lock statistics; one per runtime, passed in, never global."""

    def __init__(self, *, lock: bool = True) -> None:
        self.stats = LockStats(enabled=lock)

    def allocate(self, size_bytes: int) -> SecureBuffer:
        return SecureBuffer(size_bytes, lock=self.stats.enabled, stats=self.stats)

    def describe(self) -> dict[str, Any]:
        s = self.stats
        return {
            "mlock_enabled": s.enabled,
            "locked_bytes": s.locked_bytes,
            "lock_failures": s.lock_failures,
            "last_error": s.last_error,
        }
