"""What `verify` found: findings with kind, severity and location, and the report that holds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cleanroom.audit.checkpoints import Checkpoint

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    severity: Severity = "error"
    segment: int | None = None
    offset: int | None = None
    seq: int | None = None
    checkpoint: int | None = None

    def where(self) -> str:
        parts = []
        if self.segment is not None:
            parts.append(f"segment {self.segment}")
        if self.offset is not None:
            parts.append(f"offset {self.offset}")
        if self.seq is not None:
            parts.append(f"record {self.seq}")
        if self.checkpoint is not None:
            parts.append(f"checkpoint {self.checkpoint}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{self.severity.upper()} {self.kind}" + (f" [{where}]" if where else "") + f": {self.message}"


@dataclass
class VerifyReport:
    directory: Path
    records: int = 0
    segments: int = 0
    checkpoints: int = 0
    latest_checkpoint: Checkpoint | None = None
    uncovered_records: int = 0
    consistency_proof: list[bytes] | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def add(self, kind: str, message: str, **where: int | None) -> None:
        severity: Severity = "warning" if kind in ("torn_tail", "unsigned_tail") else "error"
        self.findings.append(Finding(kind, message, severity, **where))

    def summary(self) -> str:
        head = "INTACT" if self.ok else "TAMPERED OR DAMAGED"
        cp = self.latest_checkpoint
        lines = [
            f"audit log {self.directory}: {head}",
            f"  {self.records} records in {self.segments} segments; {self.checkpoints} valid checkpoints"
            + (f", newest covers {cp.tree_size} records (root {cp.root.hex()[:16]}...)" if cp else ""),
        ]
        if self.uncovered_records:
            lines.append(f"  {self.uncovered_records} records after the newest checkpoint are not yet signed")
        lines.extend(f"  {f}" for f in self.findings)
        return "\n".join(lines)
