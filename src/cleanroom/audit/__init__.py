"""Tamper-evident audit log (DESIGN invariant 5): encrypted records, hash chain, RFC 6962 Merkle tree,
signed checkpoints, verification, inclusion/consistency proofs and anomaly alerts. See docs/audit.md."""

from cleanroom.audit.alerts import Alert, AlertMonitor, AlertSettings, BusinessHours
from cleanroom.audit.durability import AuditTicket
from cleanroom.audit.keys import AuditKeys, load_audit_keys, load_or_create_audit_keys, load_public_key
from cleanroom.audit.log import AuditLog
from cleanroom.audit.proofs import InclusionProof, ProofError, prove, verify_proof
from cleanroom.audit.reader import read_events
from cleanroom.audit.records import AuditEvent
from cleanroom.audit.report import Finding, VerifyReport
from cleanroom.audit.verify import verify

__all__ = [
    "Alert",
    "AlertMonitor",
    "AlertSettings",
    "AuditEvent",
    "AuditKeys",
    "AuditLog",
    "AuditTicket",
    "BusinessHours",
    "Finding",
    "InclusionProof",
    "ProofError",
    "VerifyReport",
    "load_audit_keys",
    "load_or_create_audit_keys",
    "load_public_key",
    "prove",
    "read_events",
    "verify",
    "verify_proof",
]
