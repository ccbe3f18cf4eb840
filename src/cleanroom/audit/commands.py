"""`cleanroom audit verify|show|prove|check-proof|checkpoint` (wired into the CLI by `cli.py`).

Commands that read records unwrap the audit keys through the configured KMS (`kms_from_settings`), so
they run on a host that may use the master key. `check-proof` needs only the audit public key.
Exit codes: 0 success / intact, 1 verification failed (tampered, damaged, proof invalid), 2 could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from cleanroom.errors import CleanroomError

if TYPE_CHECKING:
    from cleanroom.audit.keys import AuditKeys
    from cleanroom.keys.kms import KMS

KMSFactory = Callable[[Path], "KMS"]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _data_dir(args: argparse.Namespace) -> Path:
    """The data dir the command names, refused at once if it is a file (not `Not a directory:
    DIR/kms/master-keys.json`, a file the user never gave)."""
    from cleanroom.cli_common import check_data_dir_path

    if getattr(args, "data_dir", None) is not None:
        data_dir = Path(args.data_dir)
    else:
        from cleanroom.config import DEFAULT_DATA_DIR

        data_dir = Path(os.environ.get("CLEANROOM_DATA_DIR", str(DEFAULT_DATA_DIR)))
    check_data_dir_path(data_dir)
    return data_dir


def _default_kms(data_dir: Path) -> KMS:
    from cleanroom.config import Settings
    from cleanroom.keys.factory import kms_from_settings

    return kms_from_settings(Settings(data_dir=data_dir))


def _keys(args: argparse.Namespace, kms_factory: KMSFactory | None) -> AuditKeys:
    from cleanroom.audit.keys import load_audit_keys

    kms = (kms_factory or _default_kms)(_data_dir(args))
    try:
        return load_audit_keys(_data_dir(args) / "audit", kms)
    finally:
        kms.close()


def parse_since(text: str, now_s: float | None = None) -> float:
    """ISO 8601 (naive = UTC) or a relative age such as 90s, 15m, 24h, 7d."""
    match = _RELATIVE.match(text.strip())
    if match:
        return (time.time() if now_s is None else now_s) - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--since: not ISO 8601 nor an age like 24h: {text!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _fail(message: str) -> int:
    print(f"cleanroom audit: {message}", file=sys.stderr)
    return 2


def cmd_verify(args: argparse.Namespace, kms_factory: KMSFactory | None = None) -> int:
    from cleanroom.audit.verify import verify

    try:
        keys = _keys(args, kms_factory)
    except CleanroomError as exc:
        return _fail(exc.message)
    with keys:
        report = verify(_data_dir(args) / "audit", keys.audit_key, keys.public_key, args.since_checkpoint)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "segments": report.segments,
                    "checkpoints": report.checkpoints,
                    "uncovered_records": report.uncovered_records,
                    "findings": [
                        {
                            "kind": f.kind,
                            "severity": f.severity,
                            "message": f.message,
                            "segment": f.segment,
                            "offset": f.offset,
                            "seq": f.seq,
                            "checkpoint": f.checkpoint,
                        }
                        for f in report.findings
                    ],
                }
            )
        )
    else:
        print(report.summary())
    return 0 if report.ok else 1


def cmd_show(args: argparse.Namespace, kms_factory: KMSFactory | None = None) -> int:
    from cleanroom.audit.reader import read_events

    try:
        keys = _keys(args, kms_factory)
    except CleanroomError as exc:
        return _fail(exc.message)
    with keys:
        for seq, event in read_events(_data_dir(args) / "audit", keys.audit_key, tenant=args.tenant, since=args.since):
            row = event.display_dict(seq)
            if args.json:
                print(json.dumps(row, separators=(",", ":")))
            else:
                print(
                    f"{row['seq']:>8} {row['time']} {row['event']:<22} tenant={row['tenant_id']} "
                    f"key={row['key_id']} v={row['key_version']} request={row['request_id']} "
                    f"principal={row['principal']} source={row['source']} bytes={row['byte_count']}"
                )
    return 0


def cmd_prove(args: argparse.Namespace, kms_factory: KMSFactory | None = None) -> int:
    from cleanroom.audit.proofs import ProofError, prove

    try:
        keys = _keys(args, kms_factory)
    except CleanroomError as exc:
        return _fail(exc.message)
    try:
        with keys:
            proof = prove(_data_dir(args) / "audit", keys.audit_key, args.record, keys.public_key)
    except ProofError as exc:
        return _fail(str(exc))
    text = json.dumps(proof.to_json(), indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="ascii")
    else:
        print(text)
    return 0


def cmd_check_proof(args: argparse.Namespace, kms_factory: KMSFactory | None = None) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from cleanroom.audit.keys import load_public_key
    from cleanroom.audit.proofs import InclusionProof, ProofError, verify_proof

    try:
        if args.public_key:
            public_key = serialization.load_pem_public_key(Path(args.public_key).read_bytes())
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                return _fail("--public-key is not an EC public key")
        else:
            public_key = load_public_key(_data_dir(args) / "audit")
        proof = InclusionProof.from_json(json.loads(Path(args.proof).read_text(encoding="ascii")))
        event = verify_proof(proof, public_key)
    except ProofError as exc:
        print(f"proof INVALID: {exc}")
        return 1
    except (OSError, ValueError, CleanroomError) as exc:
        return _fail(str(exc))
    print(
        json.dumps(
            {
                "valid": True,
                "seq": proof.seq,
                "tree_size": proof.checkpoint.tree_size,
                "root": proof.checkpoint.root.hex(),
                "record": event.display_dict(proof.seq),
            }
        )
    )
    return 0


def cmd_checkpoint(args: argparse.Namespace, kms_factory: KMSFactory | None = None) -> int:
    from cleanroom.audit.checkpoints import save_checkpoint
    from cleanroom.audit.reader import latest_checkpoint

    try:
        keys = _keys(args, kms_factory)
    except CleanroomError as exc:
        return _fail(exc.message)
    try:
        with keys:
            checkpoint = latest_checkpoint(_data_dir(args) / "audit", keys.public_key)
    except OSError as exc:
        return _fail(f"checkpoints.jsonl cannot be read: {exc.strerror}; run `cleanroom audit verify`")
    if checkpoint is None:
        return _fail("no valid checkpoint in the audit log yet")
    save_checkpoint(checkpoint, Path(args.out))
    print(
        f"saved checkpoint #{checkpoint.index} ({checkpoint.tree_size} records, root "
        f"{checkpoint.root.hex()}) to {args.out}"
    )
    return 0


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], *, kms_factory: KMSFactory | None = None
) -> None:
    """Add `audit …`. `kms_factory(data_dir)` overrides the configured KMS (tests)."""
    audit = subparsers.add_parser("audit", help="verify, read and prove the tamper-evident audit log")
    sub = audit.add_subparsers(dest="audit_command", required=True)

    def with_data_dir(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="data directory (default: $CLEANROOM_DATA_DIR or ./cleanroom-data)",
        )
        return parser

    p = with_data_dir(sub.add_parser("verify", help="check the whole log; exit 0 only if intact"))
    p.add_argument(
        "--since-checkpoint",
        type=Path,
        default=None,
        help="a checkpoint saved earlier with `audit checkpoint --out`: prove the log only grew",
    )
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=partial(cmd_verify, kms_factory=kms_factory))

    p = with_data_dir(sub.add_parser("show", help="print records (JSON lines with --json)"))
    p.add_argument("--tenant", default=None)
    p.add_argument("--since", type=parse_since, default=None, help="ISO 8601 time or an age such as 24h")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=partial(cmd_show, kms_factory=kms_factory))

    p = with_data_dir(sub.add_parser("prove", help="inclusion proof for one record"))
    p.add_argument("record", type=int, metavar="RECORD", help="record sequence number")
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=partial(cmd_prove, kms_factory=kms_factory))

    p = with_data_dir(sub.add_parser("check-proof", help="verify a proof with the public key only"))
    p.add_argument("proof", type=Path, metavar="PROOF")
    p.add_argument("--public-key", type=Path, default=None, help="PEM (default: keys.json in the data dir)")
    p.set_defaults(func=partial(cmd_check_proof, kms_factory=kms_factory))

    p = with_data_dir(sub.add_parser("checkpoint", help="save the newest signed checkpoint to a file"))
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=partial(cmd_checkpoint, kms_factory=kms_factory))
