"""The gate between extract and commit.

A gate looks at one extracted hot batch and splits it into rows that may be committed and rows that go to
quarantine, each with a reason. ``ContractGate`` enforces the dataset contract from zones.yaml (key present and
unique, watermark and business date present, every value of its declared type). The Great Expectations gate plugs
into the same :class:`Gate` protocol. Gates never put values in reasons or results: only check names, counts and
row positions (the quarantine table holds the rows themselves, sealed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

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
        return any(c.blocking or (c.failed and c.severity == "block") for c in self.checks)

    def blocking_summary(self) -> str:
        """Which checks block and how often, e.g. ``be_between(belopp) failed 12 of 400000 rows``."""
        parts = []
        for c in self.checks:
            if c.blocking or (c.failed and c.severity == "block"):
                what = f"error: {c.error}" if c.error else (
                    f"failed {c.failed} of {c.element_count} rows" if c.element_count is not None
                    else "failed")
                limit = f" (allowed: mostly {c.mostly})" if c.mostly is not None else ""
                parts.append(f"{c.name} [{c.severity}] {what}{limit}")
        return "; ".join(parts)


class Gate(Protocol):
    def check(self, data: pa.Table, *, bad_type: pa.Array, dataset: Dataset) -> GateOutcome: ...


def _dup_mask(data: pa.Table, keys: list[str]) -> pa.Array:
    if data.num_rows == 0:
        return pa.array([], pa.bool_())
    if len(keys) == 1 and data.num_rows > 1:  # keyset pages arrive ordered: strictly increasing means unique
        col = data.column(keys[0])
        if col.null_count == 0 and pc.all(pc.greater(col[1:], col[:-1])).as_py():
            return pa.repeat(False, data.num_rows)
    counts = data.select(keys).group_by(keys).aggregate([([], "count_all")])
    dup = counts.filter(pc.greater(counts["count_all"], 1))
    if dup.num_rows == 0:
        return pa.array([False] * data.num_rows, pa.bool_())
    if len(keys) == 1:
        return pc.fill_null(pc.is_in(data.column(keys[0]), value_set=dup.column(keys[0])), False)
    joined = data.select(keys).append_column("_i", pa.array(range(data.num_rows))).join(
        dup.select(keys), keys=keys, join_type="inner")
    mask = [False] * data.num_rows
    for i in joined["_i"].to_pylist():
        mask[i] = True
    return pa.array(mask, pa.bool_())


def split(data: pa.Table, failures: list[tuple[str, pa.Array]]) -> GateOutcome:
    """Split a batch by boolean failure masks (True = row fails that check)."""
    checks = [CheckResult(name, int(pc.sum(m).as_py() or 0), type=f"datazones.{name}", element_count=data.num_rows)
              for name, m in failures]
    if not any(c.failed for c in checks):
        return GateOutcome(data, data.slice(0, 0), pa.array([], pa.string()), checks)
    any_fail = pa.array([False] * data.num_rows, pa.bool_())
    reason = pa.array([""] * data.num_rows, pa.string())
    for name, m in failures:
        any_fail = pc.or_(any_fail, m)
        reason = pc.if_else(m, pc.binary_join_element_wise(reason, pa.scalar(name), ";"), reason)
    reason = pc.utf8_ltrim(reason, characters=";")
    return GateOutcome(data.filter(pc.invert(any_fail)), data.filter(any_fail), reason.filter(any_fail), checks)


class ContractGate:
    """Key present and unique, watermark and business date present, values of their declared type."""

    def check(self, data: pa.Table, *, bad_type: pa.Array, dataset: Dataset) -> GateOutcome:
        keys = list(dataset.primary_key)
        null_key = pa.array([False] * data.num_rows, pa.bool_())
        for k in keys:
            null_key = pc.or_(null_key, pc.is_null(data.column(k)))
        failures = [
            ("null_key", null_key),
            ("duplicate_key", _dup_mask(data, keys)),
            ("null_watermark", pc.is_null(data.column(dataset.watermark))),
            ("null_business_date", pc.is_null(data.column(dataset.business_date))),
            ("wrong_type", bad_type),
        ]
        return split(data, [(n, pc.fill_null(m, False)) for n, m in failures])
