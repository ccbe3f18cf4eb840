"""Prometheus metrics of one server (a registry per app, so tests and embedders never share state)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cleanroom.errors import CleanroomError

# Error codes cleanroom raises with `code="..."` (the class-level ones are collected from the hierarchy).
# Every other code is counted as "other": model code may raise a CleanroomError with a code made from its
# input, and /metrics is unauthenticated (payload bytes as a label value, and one new series per input).
# tests/test_observability_redteam.py checks that every `code="..."` literal in src/ is listed here.
RAISED_CODES = frozenset(
    """address_unknown admin_unreachable app_rejected_input backup_audit_invalid backup_bad_output
    backup_key_unavailable backup_master_key_unavailable backup_nothing bad_admin_token client_disconnected
    credential_already_revoked credential_expired
    duplicate_header invalid_batch invalid_body invalid_byok_key invalid_byok_spec invalid_cidr
    invalid_client_identity invalid_content_length invalid_expiry invalid_input invalid_json invalid_key_action
    invalid_key_name invalid_key_size invalid_key_version invalid_label invalid_overlap invalid_public_key
    invalid_request invalid_response invalid_rotation_period invalid_tenant_name invalid_weight key_corrupt key_expired
    key_version_retired missing_input model_rejected_input replay_cache_full request_body_timeout
    scheduler_failed server_running spill_misconfigured tenant_exists tenant_routing_mismatch too_many_batches
    unexpected_response unknown_credential unknown_key unknown_key_id unsupported_content_encoding
    batch_queued batch_running
    batch_succeeded batch_failed batch_cancelled batch_expired batch_retrieved ok""".split()  # noqa: SIM905 - a word list
)
OTHER_CODE = "other"


def _class_codes() -> set[str]:
    """Walked per call (about a hundred classes): a subclass imported after start-up counts too."""
    codes: set[str] = set()
    pending: list[type[CleanroomError]] = [CleanroomError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return codes


def code_label(code: str) -> str:
    """`code` if cleanroom itself raises it, else "other": label values come from a bounded set."""
    return code if code in RAISED_CODES or code in _class_codes() else OTHER_CODE


@dataclass
class ServerMetrics:
    registry: CollectorRegistry
    requests: Counter
    errors: Counter
    latency: Histogram
    mlock_failures: Gauge
    locked_bytes: Gauge
    hardening: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ServerMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "cleanroom_requests", "Sealed requests handled", ["tenant_id", "model", "outcome"], registry=registry
            ),
            errors=Counter("cleanroom_errors", "Requests refused, by error code", ["code"], registry=registry),
            latency=Histogram(
                "cleanroom_request_seconds",
                "Server-side request time",
                ["model"],
                registry=registry,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            ),
            mlock_failures=Gauge(
                "cleanroom_mlock_failures", "SecureBuffers that could not be locked in RAM", registry=registry
            ),
            locked_bytes=Gauge("cleanroom_locked_bytes", "Bytes of SecureBuffer memory locked now", registry=registry),
            hardening=Gauge(
                "cleanroom_hardening", "Process hardening in force (1) or not (0)", ["control"], registry=registry
            ),
        )

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop a deleted tenant's series (label cardinality must not grow with tenant churn)."""
        self.requests.remove_by_labels({"tenant_id": tenant_id})
