"""Verify an audit directory with a test's keys and pick out the finding a tamper test expects."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.verify import Finding, VerifyReport, verify

Keys = tuple[bytearray, ec.EllipticCurvePrivateKey]  # (audit key, checkpoint signing key)


def check_log(directory: Path, keys: Keys, **kwargs: object) -> VerifyReport:
    return verify(directory, keys[0], keys[1].public_key(), **kwargs)  # type: ignore[arg-type]


def expect_finding(report: VerifyReport, kind: str) -> Finding:
    """The first finding of `kind`; fails with the whole report when there is none (or the log is ok)."""
    matches = [f for f in report.findings if f.kind == kind]
    assert matches, f"expected {kind}; got:\n{report.summary()}"
    assert not report.ok
    return matches[0]
