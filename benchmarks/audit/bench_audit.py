"""Audit log benchmark: append overhead (group commit), verify throughput, proof size and time.

    .venv/bin/python benchmarks/audit/bench_audit.py [--records N] [--dir D] [--json OUT]

- append: microseconds per record, amortized (wall clock, and process CPU time: the overhead a request
  pays in CPU, independent of the disk), for fsync none/always/group and 1..256 appending threads
  (group commit shares one fdatasync among the records queued while the previous one ran);
- verify: records per second for a full `verify` of an N-record log (decrypt + chain + Merkle + signatures);
- proofs: inclusion-proof path bytes and whole-proof JSON bytes for the N-record log, and the path length
  for a 1,000,000-leaf tree measured on synthetic leaves (the path depends only on the tree size).
The log lives in --dir (default: a temp dir on the same disk as /tmp); fsync numbers depend on that disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.log import AuditLog, FsyncPolicy
from cleanroom.audit.merkle import MerkleTree, leaf_hash, verify_inclusion
from cleanroom.audit.proofs import prove, verify_proof
from cleanroom.audit.records import AuditEvent
from cleanroom.audit.verify import verify


def _event(i: int) -> AuditEvent:
    """A realistic decrypt record (about 300 bytes of JSON)."""
    return AuditEvent(event="decrypt.request_key", tenant_id=f"tenant-{i % 50:04d}", key_id="tk-3f9a2c",
                      key_version=3, purpose="request", request_id=f"{i:032x}", principal="ak_7Hq2Lm9x",
                      source="203.0.113.42", byte_count=4096 + i % 1000, details={"model": "minilm"})


def bench_append(base: Path, keys: tuple[bytearray, ec.EllipticCurvePrivateKey], policy: FsyncPolicy,
                 threads: int, per_thread: int) -> dict[str, Any]:
    directory = base / f"append-{policy}-{threads}"
    events = [_event(i) for i in range(per_thread)]
    with AuditLog(directory, *keys, fsync=policy) as log:
        for e in events[:20]:
            log.append(e)  # warm up
        barrier = threading.Barrier(threads + 1)

        def worker() -> None:
            barrier.wait()
            for e in events:
                log.append(e)

        workers = [threading.Thread(target=worker) for _ in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        start, cpu_start = time.perf_counter(), time.process_time()
        for w in workers:
            w.join()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    shutil.rmtree(directory)
    total = threads * per_thread
    return {"fsync": policy, "threads": threads, "records": total, "seconds": round(elapsed, 3),
            "us_per_record": round(elapsed / total * 1e6, 1), "records_per_s": round(total / elapsed),
            "cpu_us_per_record": round(cpu / total * 1e6, 1)}


def bench_fsync(base: Path) -> float:
    """Median fdatasync latency of this disk, for reading the group-commit numbers."""
    path = base / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    samples = []
    try:
        for _ in range(50):
            os.write(fd, b"x" * 400)
            start = time.perf_counter()
            os.fdatasync(fd)
            samples.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples) * 1e6


def bench_verify_and_prove(base: Path, keys: tuple[bytearray, ec.EllipticCurvePrivateKey],
                           records: int) -> dict[str, Any]:
    directory = base / "verify"
    start = time.perf_counter()
    with AuditLog(directory, *keys, fsync="none") as log:
        for i in range(records):
            log.append(_event(i))
    build_s = time.perf_counter() - start
    size_bytes = sum(p.stat().st_size for p in directory.iterdir())
    start = time.perf_counter()
    with AuditLog(directory, *keys) as log:  # resume from the last checkpoint: O(records since it)
        reopen_s = time.perf_counter() - start
    start = time.perf_counter()
    report = verify(directory, keys[0], keys[1].public_key())
    verify_s = time.perf_counter() - start
    assert report.ok, report.summary()
    start = time.perf_counter()
    proof = prove(directory, keys[0], records // 2)
    prove_s = time.perf_counter() - start
    start = time.perf_counter()
    verify_proof(proof, keys[1].public_key())
    check_us = (time.perf_counter() - start) * 1e6
    proof_json = json.dumps(proof.to_json(), separators=(",", ":"))
    shutil.rmtree(directory)
    return {
        "records": records, "log_bytes": size_bytes, "bytes_per_record": round(size_bytes / records, 1),
        "build_s": round(build_s, 2), "build_us_per_record": round(build_s / records * 1e6, 1),
        "reopen_ms": round(reopen_s * 1e3, 1),
        "verify_s": round(verify_s, 2), "verify_records_per_s": round(records / verify_s),
        "prove_s": round(prove_s, 2), "proof_check_us": round(check_us), "proof_path_hashes": len(proof.path),
        "proof_path_bytes": proof.path_bytes, "proof_json_bytes": len(proof_json),
        "proof_binary_bytes": len(proof.frame) + 32 + proof.path_bytes + len(proof.checkpoint.signed_body())
        + len(proof.checkpoint.signature) + 12,
        "checkpoints": report.checkpoints,
    }


def bench_million_leaf_proof(leaves: int = 1_000_000) -> dict[str, Any]:
    start = time.perf_counter()
    hashes = [leaf_hash(i.to_bytes(8, "big")) for i in range(leaves)]
    tree = MerkleTree(hashes)
    build_s = time.perf_counter() - start
    lengths = []
    for index in (0, 1, leaves // 3, leaves // 2, leaves - 2, leaves - 1):
        path = tree.inclusion_proof(index)
        assert verify_inclusion(hashes[index], index, leaves, path, tree.root())
        lengths.append(len(path))
    consistency = tree.consistency_proof(leaves // 2 + 1)
    return {"leaves": leaves, "tree_build_s": round(build_s, 2), "path_hashes_max": max(lengths),
            "path_bytes_max": 32 * max(lengths), "consistency_proof_bytes": 32 * len(consistency),
            "analytic_path_hashes": (leaves - 1).bit_length()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="size of the log to verify and prove")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--skip-append", action="store_true", help="only verify/proof numbers (e.g. with 1M records)")
    args = parser.parse_args()
    keys = (bytearray(os.urandom(32)), ec.generate_private_key(ec.SECP384R1()))
    base = Path(tempfile.mkdtemp(prefix="cleanroom-audit-bench-", dir=args.dir))
    per = 200 if args.quick else 2000
    try:
        results: dict[str, Any] = {"loadavg_1m": os.getloadavg()[0], "fdatasync_us": round(bench_fsync(base))}
        runs = [("none", 1, per * 5), ("none", 16, per), ("always", 1, max(50, per // 10)),
                ("group", 1, max(50, per // 10)), ("group", 16, per // 2), ("group", 64, per // 4),
                ("group", 256, per // 8)]
        results["append"] = [] if args.skip_append else [
            bench_append(base, keys, p, t, n) for p, t, n in runs]  # type: ignore[arg-type]
        results["verify"] = bench_verify_and_prove(base, keys, 2000 if args.quick else args.records)
        results["million_leaf_tree"] = bench_million_leaf_proof(50_000 if args.quick else 1_000_000)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"fdatasync on this disk: {results['fdatasync_us']} us (median)")
    print(f"load average at start: {results['loadavg_1m']} on {os.cpu_count()} CPUs")
    print(f"{'fsync':<7}{'threads':>8}{'records':>9}{'wall us/rec':>12}{'cpu us/rec':>11}{'records/s':>11}")
    for row in results["append"]:  # empty with --skip-append
        print(f"{row['fsync']:<7}{row['threads']:>8}{row['records']:>9}{row['us_per_record']:>12}"
              f"{row['cpu_us_per_record']:>11}{row['records_per_s']:>11}")
    v = results["verify"]
    print(f"verify: {v['records']} records ({v['bytes_per_record']} B each) in {v['verify_s']} s = "
          f"{v['verify_records_per_s']} records/s; reopen {v['reopen_ms']} ms")
    print(f"proof for record {v['records'] // 2} of {v['records']}: {v['proof_path_hashes']} hashes = "
          f"{v['proof_path_bytes']} B path, {v['proof_binary_bytes']} B binary, {v['proof_json_bytes']} B JSON; "
          f"made in {v['prove_s']} s, checked in {v['proof_check_us']} us")
    m = results["million_leaf_tree"]
    print(f"{m['leaves']}-leaf tree: path {m['path_hashes_max']} hashes = {m['path_bytes_max']} B "
          f"(analytic ceil(log2 n) = {m['analytic_path_hashes']}); consistency proof {m['consistency_proof_bytes']} B;"
          f" tree built in {m['tree_build_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
