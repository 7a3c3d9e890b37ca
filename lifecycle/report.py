"""What a transition returns: a report, not prints. The CLI renders it, DAGs push it to XCom, lineage copies it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TransitionReport:
    transition: str
    dataset: str
    mode: str = ""  # full | incremental | noop | recovered
    rows_read: int = 0
    rows_written: int = 0  # rows accepted into warm at their version (read = written + quarantined) ...
    rows_unchanged: int = 0  # ... of which warm held that version already (a lookback re-read, a recovered batch)
    rows_quarantined: int = 0
    rows_deleted: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    batches: int = 0
    delta_version: int | None = None
    watermark_from: str | None = None
    watermark_to: str | None = None
    key_id: str | None = None
    recovered_batches: int = 0
    new_columns: list[str] = field(default_factory=list)
    checks: dict[str, int] = field(default_factory=dict)  # failing rows per check (quality gate)
    warnings: list[str] = field(default_factory=list)  # warn-severity checks that failed
    blocked: str | None = None  # the block-severity checks that stopped the run
    timings: dict[str, float] = field(default_factory=dict)
    batch_ids: list[str] = field(default_factory=list)

    def add_time(self, name: str, seconds: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 4)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
