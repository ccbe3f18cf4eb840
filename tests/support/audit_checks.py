"""Audit-log test helpers: keys, a damageable copy of a log, its frames, and verifying it with the test's
keys to pick out the finding a tamper test expects."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.records import SEGMENT_HEADER_LEN
from cleanroom.audit.segments import Frame, scan_frames
from cleanroom.audit.verify import Finding, VerifyReport, verify

Keys = tuple[bytearray, ec.EllipticCurvePrivateKey]  # (audit key, checkpoint signing key)


def new_keys() -> Keys:
    return bytearray(os.urandom(32)), ec.generate_private_key(ec.SECP384R1())


def copy_log(pristine: Path, tmp_path: Path) -> Path:
    """A copy of a pristine audit directory for one test to damage."""
    copy = tmp_path / "audit"
    shutil.copytree(pristine, copy)
    return copy


def frames_of(path: Path) -> list[Frame]:
    """The records of one segment file, in order (what a tamper test picks its victim from)."""
    return [f for f in scan_frames(path.read_bytes(), SEGMENT_HEADER_LEN, 0) if isinstance(f, Frame)]


def check_log(directory: Path, keys: Keys, **kwargs: object) -> VerifyReport:
    return verify(directory, keys[0], keys[1].public_key(), **kwargs)  # type: ignore[arg-type]


def expect_finding(report: VerifyReport, kind: str) -> Finding:
    """The first finding of `kind`; fails with the whole report when there is none (or the log is ok)."""
    matches = [f for f in report.findings if f.kind == kind]
    assert matches, f"expected {kind}; got:\n{report.summary()}"
    assert not report.ok
    return matches[0]
