"""Where the CPU of a write-ahead request goes: the batch thread's own time by phase, and other threads'.

    .venv/bin/python benchmarks/audit/cpu_split.py [--records 8000] [--each]

One thread plays `bench_audit.py`'s "w-a 1 dev b8 +2ms model" row: per batch of 8 requests it writes their
records (one `record_many_ahead`; `--each`, or an AuditLog without it: one `record_ahead` per request),
starts the fdatasync, sleeps 2 ms (the model), and waits for durability. It prints process CPU per record,
the batch thread's CPU per record in each phase (`time.thread_time`, so syscalls included), and the rest:
the background syncer (its fdatasync is kernel CPU) and the checkpoint ticker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).parent))
from bench_audit import _fields

from cleanroom.audit.log import AuditLog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=8000)
    parser.add_argument("--each", action="store_true", help="one record_ahead per request")
    args = parser.parse_args()
    if args.records < 8:
        parser.error("--records must be >= 8 (one batch of 8)")
    keys = (bytearray(os.urandom(32)), ec.generate_private_key(ec.SECP384R1()))
    base = Path(tempfile.mkdtemp(prefix="cleanroom-audit-split-"))
    n = args.records - args.records % 8
    fields = [_fields(i) for i in range(n)]
    spent = dict.fromkeys(("records", "start_sync", "model sleep", "wait"), 0.0)
    try:
        with AuditLog(base / "log", *keys, fsync="group") as log:
            many = None if args.each else getattr(log, "record_many_ahead", None)
            for one in fields[:20]:
                log.record(one)  # warm up: first checkpoint, caches
            process, thread = time.process_time(), time.thread_time()
            for i in range(0, n, 8):
                batch = fields[i : i + 8]
                t0 = time.thread_time()
                tickets = [many(batch)] if many is not None else [log.record_ahead(one) for one in batch]
                t1 = time.thread_time()
                tickets[-1].start_sync()
                t2 = time.thread_time()
                time.sleep(0.002)
                t3 = time.thread_time()
                for ticket in tickets:
                    ticket.wait_durable()
                t4 = time.thread_time()
                for phase, took in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    spent[phase] += took
            process, thread = time.process_time() - process, time.thread_time() - thread
    finally:
        shutil.rmtree(base, ignore_errors=True)
    phases = ", ".join(f"{phase} {took / n * 1e6:.1f}" for phase, took in spent.items())
    print(
        f"{'one record_ahead per request' if many is None else 'record_many_ahead per batch'}, load "
        f"{os.getloadavg()[0]:.2f}: process CPU {process / n * 1e6:.1f} us/record = batch thread "
        f"{thread / n * 1e6:.1f} ({phases}) + other threads {(process - thread) / n * 1e6:.1f}"
    )


if __name__ == "__main__":
    main()
