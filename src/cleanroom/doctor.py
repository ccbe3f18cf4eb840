"""`cleanroom doctor`: what this host can and cannot promise, checked rather than assumed.

It reports the same facts the server logs at start-up — process hardening, mlock headroom, the device and
its confidential-computing state, the data dir's permissions and the KMS — and exits non-zero when a
guarantee the settings ask for is not in force, so it can gate a deployment.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path
from typing import Any


def collect(settings: Any, *, probe_kms: bool = True) -> dict[str, Any]:
    from cleanroom.memory.hardening import current_status
    from cleanroom.runtime.device import discover
    from cleanroom.server.runner import mlock_report

    hardening = current_status()
    report: dict[str, Any] = {
        "hardening": hardening.to_json(),
        "mlock": mlock_report(settings, hardening.memlock_limit_bytes),
        "device": discover(lazy_torch=True).to_dict(),  # torch only where it could see a GPU
        "data_dir": data_dir_report(Path(settings.data_dir)),
        "kms": {"backend": settings.kms},
    }
    if probe_kms:
        report["kms"].update(kms_report(settings))
    problems = []
    if settings.allocator_hardening and not hardening.allocator_hardened:
        problems.append(
            "allocator hardening is not in force in this process (run the server with `serve`, "
            "or another server under `cleanroom exec --`)"
        )
    if "FAILED" in report["mlock"]:
        problems.append("mlock fails: plaintext pages may be swapped")
    if not report["device"]["scrub_supported"]:
        problems.append("the GPU scrub needs PyTorch's native CUDA allocator backend")
    problems += report["data_dir"]["problems"]
    if report["kms"].get("status") not in (None, "ok"):
        problems.append(f"KMS: {report['kms']['status']}")
    report["problems"] = problems
    return report


def data_dir_report(data_dir: Path) -> dict[str, Any]:
    problems = []
    if data_dir.exists():
        mode = stat.S_IMODE(os.stat(data_dir).st_mode)
        if mode & 0o077:
            problems.append(f"data dir {data_dir} is readable by others (mode {mode:o}); chmod 700")
        for secret in ("kms/master-keys.json", "admin.token", "tenants.json"):
            path = data_dir / secret
            if path.is_symlink():  # written by atomic replace: the link's target silently stops being used
                problems.append(f"{path} is a symlink; it must be a regular file in the data dir")
            elif path.exists() and stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                problems.append(f"{path} is readable by others; chmod 600")
    return {"path": str(data_dir), "exists": data_dir.exists(), "problems": problems}


def kms_row(kms: dict[str, Any]) -> str:
    """The KMS line of the table: backend, status, and the note that qualifies an "ok" (no key yet)."""
    row = f"{kms['backend']}: {kms.get('status', 'not probed')}"
    return f"{row} ({kms['note']})" if kms.get("note") else row


def kms_report(settings: Any) -> dict[str, Any]:
    from cleanroom.errors import CleanroomError
    from cleanroom.keys.factory import kms_from_settings, master_key_name

    if settings.kms == "local" and not (Path(settings.data_dir) / "kms").exists():
        return {"status": "ok", "note": "no master key yet; `serve` or `tenant create` creates it"}
    try:
        kms = kms_from_settings(settings)
        description = kms.describe(master_key_name(settings))
        return {
            "status": "ok" if description.enabled else "master key disabled (system sealed)",
            "master_version": description.latest_version,
        }
    except CleanroomError as exc:
        return {"status": f"{exc.code}: {exc.message}"}


def run_doctor(args: argparse.Namespace) -> int:
    from cleanroom.cli import settings_from_args
    from cleanroom.memory.hardening import allocator_hardened, apply_process_hardening, reexec_self_hardened

    settings = settings_from_args(args)
    # Check the process `serve` would run as: re-exec with the allocator settings, apply the rest.
    if settings.allocator_hardening and not allocator_hardened():
        reexec_self_hardened(settings.malloc_perturb_byte)
    apply_process_hardening(disable_core_dumps=settings.disable_core_dumps, not_dumpable=settings.not_dumpable)
    report = collect(settings, probe_kms=not args.no_kms)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    return 1 if report["problems"] else 0


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cleanroom doctor", show_header=False)
    hardening = report["hardening"]
    device = report["device"]
    rows = [
        ("allocator hardening", "on" if hardening["allocator_hardened"] else "OFF"),
        ("core dumps", "off" if hardening["core_dumps_disabled"] else "ON"),
        ("dumpable", "no" if hardening["not_dumpable"] else "yes"),
        ("mlock", report["mlock"]),
        ("device", device["kind"] + "".join(f"  {g['name']}" for g in device["gpus"])),
        ("confidential computing", str(device.get("confidential_computing"))),
        ("KMS", kms_row(report["kms"])),
        ("data dir", report["data_dir"]["path"] + ("" if report["data_dir"]["exists"] else " (not created yet)")),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    for problem in report["problems"]:
        console.print(f"[red]problem:[/red] {problem}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("doctor", help="check what this host can promise (hardening, mlock, GPU, KMS)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-kms", action="store_true", help="do not contact the KMS")
    parser.set_defaults(func=run_doctor)
