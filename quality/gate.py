"""The gate between extract and commit.

A gate looks at one extracted hot batch and splits it into rows that may be committed and rows that go to
quarantine, each with a reason, and says whether the batch is blocked. The Great Expectations gate
(:mod:`quality.gx_gate`) implements the :class:`Gate` protocol. Gates never put values in reasons or results: only
check names, counts and row positions (the quarantine table holds the rows themselves, sealed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from zones.model import Dataset


@dataclass(frozen=True)
class CheckResult:
    """One check of one batch: counts only, never values."""

    name: str
    failed: int  # rows that failed (unexpected_count); for a table-level check 1 when it failed
    severity: str = "quarantine"  # block | warn | quarantine
    success: bool | None = None  # the check's verdict (GX ``success``: honours ``mostly``); None = failed == 0
    blocking: bool = False  # this failure stops the batch (block, an over-``mostly`` quarantine, an error)
    type: str = ""  # GX expectation type, or datazones.<check> for contract checks outside GX
    element_count: int | None = None
    mostly: float | None = None
    error: str | None = None  # the check could not be evaluated (it then blocks)

    @property
    def ok(self) -> bool:
        return self.success if self.success is not None else self.failed == 0


@dataclass
class GateOutcome:
    passed: pa.Table
    rejected: pa.Table
    reasons: pa.Array  # one string per rejected row: the failed checks, ';'-separated
    checks: list[CheckResult] = field(default_factory=list)
    suite: str = "contract"
    result: dict[str, Any] | None = None  # the GX validation result, scrubbed of every value (Data Docs)

    @property
    def blocked(self) -> bool:
        return any(c.blocking for c in self.checks)

    def blocking_summary(self) -> str:
        """Which checks block and how often, e.g. ``be_between(belopp) failed 12 of 400000 rows``."""
        parts = []
        for c in self.checks:
            if c.blocking:
                what = f"error: {c.error}" if c.error else (
                    f"failed {c.failed} of {c.element_count} rows" if c.element_count is not None
                    else "failed")
                limit = f" (allowed: mostly {c.mostly})" if c.mostly is not None else ""
                parts.append(f"{c.name} [{c.severity}] {what}{limit}")
        return "; ".join(parts)


class Gate(Protocol):
    """Judges one extracted batch. A gate may also offer ``prepare(project, schema=None)`` (start slow set-up
    while the first page is extracted; ``schema`` is the batches' Arrow schema, passed when the signature takes
    it — ``prepare(project)`` still works) and ``ready()`` (wait for it; timed as ``gate_load``): promote calls
    them when present."""

    def check(self, data: pa.Table, *, bad_type: pa.Array, dataset: Dataset) -> GateOutcome: ...


def split(data: pa.Table, masks: list[tuple[str, np.ndarray]], checks: list[CheckResult]) -> GateOutcome:
    """Split a batch by per-check boolean row masks (True = the row fails that check)."""
    n = data.num_rows
    if not masks:
        return GateOutcome(data, data.slice(0, 0), pa.array([], pa.string()), checks)
    any_fail = np.zeros(n, dtype=bool)
    for _, m in masks:
        any_fail |= m
    idx = np.flatnonzero(any_fail)
    reasons = [";".join(name for name, m in masks if m[i]) for i in idx]
    return GateOutcome(data.filter(pa.array(~any_fail)), data.take(pa.array(idx)), pa.array(reasons, pa.string()),
                       checks)
