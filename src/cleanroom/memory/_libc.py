"""The few libc calls the memory package needs, bound once through ctypes.

Python's `mmap` exposes `madvise` but not `mlock`, `prctl` or `malloc_trim`; these are thin bindings that
return the errno instead of raising, so callers decide what a failure means (locking is best-effort).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
MADV_WIPEONFORK = 18  # Linux 4.14+; not exported by the mmap module


@lru_cache(maxsize=1)
def libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c") or "libc.so.6"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return lib


def mlock(address: int, size_bytes: int) -> int:
    """Lock pages in RAM; returns 0 or the errno (ENOMEM past RLIMIT_MEMLOCK without CAP_IPC_LOCK)."""
    if libc().mlock(ctypes.c_void_p(address), ctypes.c_size_t(size_bytes)) == 0:
        return 0
    return ctypes.get_errno()


def munlock(address: int, size_bytes: int) -> int:
    if libc().munlock(ctypes.c_void_p(address), ctypes.c_size_t(size_bytes)) == 0:
        return 0
    return ctypes.get_errno()


def set_dumpable(dumpable: bool) -> int:
    """prctl(PR_SET_DUMPABLE): 0 forbids core dumps and ptrace/`/proc/PID/mem` by non-privileged peers."""
    if libc().prctl(PR_SET_DUMPABLE, 1 if dumpable else 0, 0, 0, 0) == 0:
        return 0
    return ctypes.get_errno()


def get_dumpable() -> bool:
    return bool(libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


def malloc_trim() -> bool:
    """Give freed heap pages back to the kernel (glibc only); False where unavailable."""
    try:
        trim = libc().malloc_trim
    except AttributeError:
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))


def zero(address: int, size_bytes: int) -> None:
    """memset to zero; the call goes through ctypes so the compiler cannot elide it as a dead store."""
    if size_bytes:
        ctypes.memset(address, 0, size_bytes)


def errno_name(code: int) -> str:
    return os.strerror(code) if code else "ok"
