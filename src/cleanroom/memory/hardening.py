"""Process hardening: no core dumps, not dumpable, and an allocator that wipes what it frees.

Measured on glibc 2.36 (DESIGN §4): freed `bytes`/`str` objects keep their contents. With
`PYTHONMALLOC=malloc` every Python object comes from glibc malloc, and `glibc.malloc.perturb` fills each
freed chunk; `glibc.malloc.tcache_count=0` is needed too, because chunks parked in the per-thread cache
skip the perturb. These are read once when the interpreter and libc start, so `serve` re-executes itself
with them set (`exec_hardened`), and `cleanroom exec -- CMD` does the same for someone else's server.

What the wiping costs, and `glibc.malloc.hugetlb=1`: routing every Python object through glibc without
its tcache, and filling every chunk on malloc and on free, made a minilm forward pass ~0.5 ms (batch 1) to
~6 ms (batch 32) slower (issue 2; no tunable splits the fills from the guarantee, and a fixed
`mmap_threshold` made batch 32 ~15 % slower still: every large tensor then faults in fresh pages).
`hugetlb=1` asks for transparent huge pages (`MADV_HUGEPAGE`) on malloc's heap and mappings: fewer page
faults and TLB misses, nothing about what is wiped changes (perturb and tcache_count stay). Measured
interleaved against the same server without it: minilm batch 1 ~0.7-0.9 ms and batch 32 ~2.5 ms faster
per request. It only advises (a kernel with THP `never` ignores it, an older glibc ignores the tunable);
an operator who sets `glibc.malloc.hugetlb` in GLIBC_TUNABLES keeps their own value (0 turns it off,
e.g. on a host where THP compaction stalls are a concern).
"""

from __future__ import annotations

import os
import re
import resource
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NoReturn

from cleanroom.memory import _libc

HARDENED_MARK = "CLEANROOM_ALLOCATOR_HARDENED"
HUGETLB_TUNABLE = "glibc.malloc.hugetlb="


def hardened_environ(base: Mapping[str, str], perturb_byte: int = 0xA5) -> dict[str, str]:
    """`base` plus the allocator settings; keeps any GLIBC_TUNABLES already present."""
    env = dict(base)
    tunables = [
        t
        for t in env.get("GLIBC_TUNABLES", "").split(":")
        if t and not t.startswith(("glibc.malloc.perturb=", "glibc.malloc.tcache_count="))
    ]
    tunables += [f"glibc.malloc.perturb={perturb_byte}", "glibc.malloc.tcache_count=0"]
    if not any(t.startswith(HUGETLB_TUNABLE) for t in tunables):  # a speed setting: the operator's value wins
        tunables.append(f"{HUGETLB_TUNABLE}1")
    env["GLIBC_TUNABLES"] = ":".join(tunables)
    env["PYTHONMALLOC"] = "malloc"
    env[HARDENED_MARK] = "1"
    return env


def allocator_hardened(env: Mapping[str, str] = os.environ) -> bool:
    """True when this interpreter started with the hardened allocator settings."""
    tunables = env.get("GLIBC_TUNABLES", "")
    return (
        env.get("PYTHONMALLOC") == "malloc"
        and "glibc.malloc.perturb=" in tunables
        and "glibc.malloc.tcache_count=0" in tunables
    )


_PRELOADED_ALLOCATOR = re.compile(r"(malloc|hoard)", re.IGNORECASE)  # jemalloc, tcmalloc, mimalloc, ...


def preloaded_allocators(env: Mapping[str, str] = os.environ) -> list[str]:
    """Allocators `LD_PRELOAD` puts in place of glibc's malloc: the perturb/tcache wiping of the hardened
    environment is glibc's, so it does not apply to them."""
    entries = env.get("LD_PRELOAD", "").replace(":", " ").split()
    return [os.path.basename(entry) for entry in entries if _PRELOADED_ALLOCATOR.search(os.path.basename(entry))]


def exec_hardened(argv: Sequence[str], perturb_byte: int = 0xA5) -> NoReturn:
    """Replace this process with `argv` under the hardened environment (PATH lookup like a shell)."""
    env = hardened_environ(os.environ, perturb_byte)
    os.execvpe(argv[0], list(argv), env)  # noqa: S606 - exec is the point: the launcher becomes COMMAND


def reexec_self_hardened(perturb_byte: int = 0xA5) -> NoReturn:
    """Re-run the current `cleanroom` invocation under the hardened allocator."""
    exec_hardened([sys.executable, "-m", "cleanroom", *sys.argv[1:]], perturb_byte)


@dataclass
class HardeningStatus:
    core_dumps_disabled: bool
    not_dumpable: bool
    allocator_hardened: bool
    memlock_limit_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def apply_process_hardening(*, disable_core_dumps: bool = True, not_dumpable: bool = True) -> HardeningStatus:
    """Turn off core dumps and mark the process non-dumpable; report what is in force."""
    if disable_core_dumps:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not_dumpable:
        _libc.set_dumpable(False)
    return current_status()


def current_status() -> HardeningStatus:
    soft, _hard = resource.getrlimit(resource.RLIMIT_CORE)
    memlock, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return HardeningStatus(
        core_dumps_disabled=soft == 0,
        not_dumpable=not _libc.get_dumpable(),
        allocator_hardened=allocator_hardened(),
        memlock_limit_bytes=None if memlock == resource.RLIM_INFINITY else memlock,
    )
