"""How many threads one torch forward pass may use.

torch starts one intra-op thread per core. That is right for a host that runs one forward at a time and
nothing else, and wrong when several device workers (`cpu_workers`) or other processes share the cores:
the threads then fight for them and a single small request waits behind the whole pool (measured on the
2-core dev VM, a light tenant alone at 10 requests/s: p50 362 ms with torch's default, 48 ms with one
thread). OpenMP reads `OMP_NUM_THREADS` once, when its runtime starts, and worker threads created later
start from that value, so the setting goes into the environment before torch loads (the server re-execs
itself, which carries it), and `torch.set_num_threads` covers a process where torch is already loaded.
"""

from __future__ import annotations

import os
import sys

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_torch_threads(threads: int) -> None:
    """Every forward pass of this process (and of processes it execs) uses at most `threads` threads."""
    if threads < 1:
        raise ValueError(f"torch threads must be at least 1, got {threads}")
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")  # never import torch just for this: the env covers a later import
    if torch is not None:
        torch.set_num_threads(threads)
