"""Audit log benchmark: append overhead (group commit), verify throughput, proof size and time.

    .venv/bin/python benchmarks/audit/bench_audit.py [--records N] [--repeat R] [--append-only] [--json OUT]

- append: microseconds per record, amortized over every record appended (wall clock / records, and process
  CPU time / records), with the same call the server makes: `AuditLog.record(mapping)` for each decrypted
  request, durable (real fdatasync) before it returns. Rows:
    * cpu baseline: fsync "none", one thread: the CPU an append costs without waiting for the disk;
    * group commit with 1, 16, 64, 256 appending threads (the goal of issue #6: <= 50 us amortized);
    * the server's own shape: the scheduler runs each device's batches on one thread, and the batch runner
      opens (and audits) a batch's requests one after another, so only as many records share an fsync as
      there are devices; `record_many` is the same batch audited in one group commit;
    * write-ahead ("write-ahead ...", "w-a ..."): the request path, a batch's records written with one
      `record_many_ahead` (an older AuditLog, or "w-a each": one `record_ahead` per request), one
      fdatasync per batch started before a simulated 2 ms model and waited for after it; "w-a alerts"
      adds the serve path's anomaly monitor. `benchmarks/audit/cpu_split.py` splits a w-a row's CPU;
    * asyncio tasks that append through `asyncio.to_thread` (the default executor's few threads).
  Each row is measured --repeat times in this one run and the median printed; `rec/commit` is the mean
  number of records that shared one write + fdatasync.
- verify: records per second for a full `verify` of an N-record log (decrypt + chain + Merkle + signatures);
- proofs: inclusion-proof path bytes and whole-proof JSON bytes for the N-record log, and the path length
  for a 1,000,000-leaf tree measured on synthetic leaves (the path depends only on the tree size).
The log lives in --dir (default: a temp dir on the same disk as /tmp); fsync numbers depend on that disk,
and every number depends on what else the machine runs (the load average is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.alerts import AlertMonitor, AlertSettings
from cleanroom.audit.log import AuditLog, FsyncPolicy
from cleanroom.audit.merkle import MerkleTree, leaf_hash, verify_inclusion
from cleanroom.audit.proofs import prove, verify_proof
from cleanroom.audit.records import AuditEvent
from cleanroom.audit.verify import verify

GOAL_US_PER_RECORD = 50.0
Keys = tuple[bytearray, ec.EllipticCurvePrivateKey]


def _event(i: int) -> AuditEvent:
    """A realistic decrypt record (about 300 bytes of JSON)."""
    return AuditEvent(
        event="decrypt.request_key",
        tenant_id=f"tenant-{i % 50:04d}",
        key_id="tk-3f9a2c",
        key_version=3,
        purpose="request",
        request_id=f"{i:032x}",
        principal="ak_7Hq2Lm9x",
        source="203.0.113.42",
        byte_count=4096 + i % 1000,
        details={"model": "minilm"},
    )


def _fields(i: int) -> dict[str, Any]:
    """The mapping `RequestOpener.open` hands the audit sink for one request (runtime/session.py)."""
    return {
        "event": "decrypt.request_key",
        "tenant_id": f"tenant-{i % 50:04d}",
        "key_id": "tk-3f9a2c",
        "purpose": "request",
        "request_id": f"{i:032x}",
        "principal": "ak_7Hq2Lm9x",
        "source": "203.0.113.42",
        "byte_count": 4096 + i % 1000,
        "model": "minilm",
    }


@dataclass(frozen=True)
class AppendCase:
    name: str
    fsync: FsyncPolicy
    appenders: int  # threads, or asyncio tasks for "asyncio"
    records_each: int
    # threads | server | server_many | server_ahead | server_ahead_each | server_ahead_alerts | asyncio
    shape: str = "threads"
    batch: int = 1  # requests per scheduler batch, for the server shapes
    goal: bool = False  # a group-commit row the <= 50 us goal applies to
    model_s: float = 0.0  # server_ahead: simulated forward pass per batch (sleep, GIL released)


def _run_threads(log: AuditLog, case: AppendCase, fields: list[dict[str, Any]]) -> float:
    """Start `appenders` threads on a barrier; return the wall seconds until the last one is done, less the
    simulated model time (measured, per thread, averaged over the threads, which model in parallel)."""
    slept: list[float] = []
    if case.shape == "server_many":
        batches = [fields[i : i + case.batch] for i in range(0, len(fields), case.batch)]

        def work() -> None:
            for batch in batches:
                log.record_many(batch)
    elif case.shape == "server_ahead_alerts":
        # What `cleanroom serve`'s AuditLogSink does per batch: the events built once, written as one unit,
        # and fed to the anomaly monitor (an older tree: one record_ahead + observe per request).
        batches = [fields[i : i + case.batch] for i in range(0, len(fields), case.batch)]
        monitor = AlertMonitor(AlertSettings())
        many_ahead = getattr(log, "append_many_ahead", None)

        def work() -> None:
            model = 0.0
            for batch in batches:
                events = [log.event_from_fields(one) for one in batch]
                if many_ahead is not None:
                    tickets = [many_ahead(events)]
                else:
                    tickets = [log.append_ahead(event) for event in events]
                for event in events:
                    monitor.observe(event)
                tickets[-1].start_sync()
                began = time.perf_counter()
                time.sleep(case.model_s)
                model += time.perf_counter() - began
                for ticket in tickets:
                    ticket.wait_durable()
            slept.append(model)
    elif case.shape in ("server_ahead", "server_ahead_each"):
        # The request path since write-ahead: the batch runner writes the records of every request of a
        # batch before it decrypts any of them (one `record_many_ahead`, one group commit; an older
        # AuditLog without it, or shape "server_ahead_each": one `record_ahead` per request), starts one
        # fdatasync for the batch, runs the model, and waits before releasing anything.
        batches = [fields[i : i + case.batch] for i in range(0, len(fields), case.batch)]
        record_many_ahead = getattr(log, "record_many_ahead", None) if case.shape == "server_ahead" else None

        def work() -> None:
            model = 0.0
            for batch in batches:
                if record_many_ahead is not None:
                    tickets = [record_many_ahead(batch)]
                else:
                    tickets = [log.record_ahead(one) for one in batch]
                tickets[-1].start_sync()
                if case.model_s:
                    began = time.perf_counter()
                    time.sleep(case.model_s)  # the forward pass the fdatasync overlaps
                    model += time.perf_counter() - began
                for ticket in tickets:
                    ticket.wait_durable()
            slept.append(model)
    else:

        def work() -> None:
            for one in fields:
                log.record(one)

    barrier = threading.Barrier(case.appenders + 1)

    def worker() -> None:
        barrier.wait()
        work()

    workers = [threading.Thread(target=worker) for _ in range(case.appenders)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    return elapsed - (sum(slept) / len(slept) if slept else 0.0)


def _run_asyncio(log: AuditLog, case: AppendCase, fields: list[dict[str, Any]]) -> float:
    async def task() -> None:
        for one in fields:
            await asyncio.to_thread(log.record, one)

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(case.appenders)))
        return time.perf_counter() - start

    return asyncio.run(main())


def bench_append(base: Path, keys: Keys, case: AppendCase) -> dict[str, Any] | None:
    directory = base / f"append-{case.name}"
    fields = [_fields(i) for i in range(case.records_each)]
    with AuditLog(directory, *keys, fsync=case.fsync) as log:
        if case.shape == "server_many" and not hasattr(log, "record_many"):
            return None  # an older AuditLog, for before/after comparisons
        if case.shape.startswith("server_ahead") and not hasattr(log, "record_ahead"):
            return None
        for one in fields[:20]:
            log.record(one)  # warm up: first checkpoint, caches
        commits_before, size_before = getattr(log, "group_commits", 0), log.size
        syncs_before = getattr(log, "fdatasyncs", None)
        cpu_start = time.process_time()
        run: Callable[[AuditLog, AppendCase, list[dict[str, Any]]], float] = (
            _run_asyncio if case.shape == "asyncio" else _run_threads
        )
        elapsed = run(log, case, fields)
        cpu = time.process_time() - cpu_start
        total = log.size - size_before
        commits = getattr(log, "group_commits", 0) - commits_before
        syncs = None if syncs_before is None else log.fdatasyncs - syncs_before
    shutil.rmtree(directory)
    assert total == case.appenders * case.records_each, (total, case)
    # With a simulated model, `elapsed` is already net of it: the wall time the audit adds to the requests.
    overhead = elapsed
    return {
        "case": case.name,
        "fsync": case.fsync,
        "appenders": case.appenders,
        "records": total,
        "seconds": round(elapsed, 4),
        "us_per_record": round(overhead / total * 1e6, 1),
        "model_ms_per_batch": case.model_s * 1e3,
        "records_per_s": round(total / elapsed),
        "cpu_us_per_record": round(cpu / total * 1e6, 1),
        "records_per_commit": round(total / commits, 1) if commits else None,
        "records_per_fdatasync": round(total / syncs, 1) if syncs else None,
        "goal": case.goal,
    }


def append_cases(scale: float) -> list[AppendCase]:
    def n(records: int) -> int:
        return max(10, int(records * scale))

    return [
        AppendCase("cpu baseline", "none", 1, n(4000)),
        AppendCase("group x1", "group", 1, n(200)),  # nothing to share an fsync with: disk-bound
        AppendCase("group x16", "group", 16, n(400), goal=True),
        AppendCase("group x64", "group", 64, n(100), goal=True),
        AppendCase("group x256", "group", 256, n(25), goal=True),
        AppendCase("server 1 dev, batch 8", "group", 1, n(400), shape="server", batch=8),
        AppendCase("server 2 dev, batch 8", "group", 2, n(400), shape="server", batch=8),
        AppendCase("record_many 1 dev, b8", "group", 1, n(800), shape="server_many", batch=8),
        AppendCase("record_many 2 dev, b8", "group", 2, n(800), shape="server_many", batch=8),
        AppendCase("write-ahead 1 dev, b1", "group", 1, n(400), shape="server_ahead", batch=1),
        AppendCase("write-ahead 1 dev, b8", "group", 1, n(800), shape="server_ahead", batch=8),
        AppendCase("write-ahead 2 dev, b8", "group", 2, n(800), shape="server_ahead", batch=8),
        # The same with a 2 ms forward pass per batch between start_sync and the wait, as on the serve path:
        # "wall us/rec" is then the wall time the audit adds per request (model time subtracted).
        AppendCase("w-a 1 dev b8 +2ms model", "group", 1, n(2000), "server_ahead", batch=8, goal=True, model_s=0.002),
        AppendCase("w-a 2 dev b8 +2ms model", "group", 2, n(2000), "server_ahead", batch=8, goal=True, model_s=0.002),
        # The shape before record_many_ahead: one record_ahead call (one group commit) per request.
        AppendCase("w-a each 1 dev b8 +2ms", "group", 1, n(2000), "server_ahead_each", batch=8, model_s=0.002),
        # The serve path's sink: the same plus the anomaly monitor's `observe` for every event.
        AppendCase("w-a alerts 1dev b8 +2ms", "group", 1, n(2000), "server_ahead_alerts", batch=8, model_s=0.002),
        AppendCase("asyncio 64 to_thread", "group", 64, n(50), shape="asyncio"),
    ]


def median_rows(runs: list[list[dict[str, Any] | None]]) -> list[dict[str, Any]]:
    """Per case, the run with the median amortized wall time (its other columns come along)."""
    rows = []
    for maybe in zip(*runs, strict=True):
        samples = [row for row in maybe if row is not None]
        if not samples:
            continue
        ordered = sorted(samples, key=lambda row: row["us_per_record"])
        row = dict(ordered[len(ordered) // 2])
        row["us_per_record_all"] = [r["us_per_record"] for r in samples]
        rows.append(row)
    return rows


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


def bench_verify_and_prove(
    base: Path, keys: tuple[bytearray, ec.EllipticCurvePrivateKey], records: int
) -> dict[str, Any]:
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
        "records": records,
        "log_bytes": size_bytes,
        "bytes_per_record": round(size_bytes / records, 1),
        "build_s": round(build_s, 2),
        "build_us_per_record": round(build_s / records * 1e6, 1),
        "reopen_ms": round(reopen_s * 1e3, 1),
        "verify_s": round(verify_s, 2),
        "verify_records_per_s": round(records / verify_s),
        "prove_s": round(prove_s, 2),
        "proof_check_us": round(check_us),
        "proof_path_hashes": len(proof.path),
        "proof_path_bytes": proof.path_bytes,
        "proof_json_bytes": len(proof_json),
        "proof_binary_bytes": len(proof.frame)
        + 32
        + proof.path_bytes
        + len(proof.checkpoint.signed_body())
        + len(proof.checkpoint.signature)
        + 12,
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
    return {
        "leaves": leaves,
        "tree_build_s": round(build_s, 2),
        "path_hashes_max": max(lengths),
        "path_bytes_max": 32 * max(lengths),
        "consistency_proof_bytes": 32 * len(consistency),
        "analytic_path_hashes": (leaves - 1).bit_length(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="size of the log to verify and prove")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--skip-append", action="store_true", help="only verify/proof numbers (e.g. with 1M records)")
    parser.add_argument("--append-only", action="store_true", help="only the append numbers")
    parser.add_argument("--cases", default=None, help="comma-separated substrings: only append cases named so")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each append case; the median is printed")
    parser.add_argument(
        "--cpu", type=int, default=None, help="pin the process to this CPU: shows what cross-CPU thread wake-ups cost"
    )
    args = parser.parse_args()
    if args.repeat < 1 or args.records < 2:
        parser.error("--repeat must be >= 1 and --records >= 2")
    if args.append_only and args.skip_append:
        parser.error("--append-only and --skip-append leave nothing to run")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    keys = (bytearray(os.urandom(32)), ec.generate_private_key(ec.SECP384R1()))
    base = Path(tempfile.mkdtemp(prefix="cleanroom-audit-bench-", dir=args.dir))
    cases = append_cases(0.1 if args.quick else 1.0)
    if args.cases:
        wanted = [w.strip() for w in args.cases.split(",") if w.strip()]
        cases = [case for case in cases if any(w in case.name for w in wanted)]
    try:
        results: dict[str, Any] = {"loadavg_1m": os.getloadavg()[0], "fdatasync_us": round(bench_fsync(base))}
        runs = (
            [] if args.skip_append else [[bench_append(base, keys, case) for case in cases] for _ in range(args.repeat)]
        )
        results["append"] = median_rows(runs) if runs else []
        results["loadavg_1m_after_append"] = os.getloadavg()[0]
        if not args.append_only:
            results["verify"] = bench_verify_and_prove(base, keys, 2000 if args.quick else args.records)
            results["million_leaf_tree"] = bench_million_leaf_proof(50_000 if args.quick else 1_000_000)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"fdatasync on this disk: {results['fdatasync_us']} us (median of 50)")
    print(
        f"load average: {results['loadavg_1m']:.2f} at start, {results['loadavg_1m_after_append']:.2f} after the "
        f"append runs, on {os.cpu_count()} CPUs" + ("" if args.cpu is None else f" (pinned to CPU {args.cpu})")
    )
    if results["append"]:
        print(
            f"append via AuditLog.record(mapping), durable before return; median of {args.repeat} runs; "
            f"goal <= {GOAL_US_PER_RECORD:g} us/record amortized with group commit"
        )
        print(
            f"{'case':<24}{'fsync':<6}{'records':>8}{'wall us/rec':>12}{'cpu us/rec':>11}{'rec/commit':>11}"
            f"{'rec/fsync':>10}{'records/s':>10}  goal"
        )
    for row in results["append"]:
        verdict = ("met" if row["us_per_record"] <= GOAL_US_PER_RECORD else "MISSED") if row["goal"] else ""
        runs_text = ", ".join(str(x) for x in row["us_per_record_all"])
        print(
            f"{row['case']:<24}{row['fsync']:<6}{row['records']:>8}{row['us_per_record']:>12}"
            f"{row['cpu_us_per_record']:>11}{row['records_per_commit'] or '?':>11}"
            f"{row.get('records_per_fdatasync') or '?':>10}{row['records_per_s']:>10}"
            f"  {verdict:<6}  (runs: {runs_text})"
        )
    if args.append_only:
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return
    v = results["verify"]
    print(
        f"verify: {v['records']} records ({v['bytes_per_record']} B each) in {v['verify_s']} s = "
        f"{v['verify_records_per_s']} records/s; reopen {v['reopen_ms']} ms"
    )
    print(
        f"proof for record {v['records'] // 2} of {v['records']}: {v['proof_path_hashes']} hashes = "
        f"{v['proof_path_bytes']} B path, {v['proof_binary_bytes']} B binary, {v['proof_json_bytes']} B JSON; "
        f"made in {v['prove_s']} s, checked in {v['proof_check_us']} us"
    )
    m = results["million_leaf_tree"]
    print(
        f"{m['leaves']}-leaf tree: path {m['path_hashes_max']} hashes = {m['path_bytes_max']} B "
        f"(analytic ceil(log2 n) = {m['analytic_path_hashes']}); consistency proof {m['consistency_proof_bytes']} B;"
        f" tree built in {m['tree_build_s']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
