"""Expectation suites derived from zones.yaml — plain data, no Great Expectations import.

Each dataset gets a *promote suite*: the contract (key not null and unique, watermark and business date present),
the column declarations (type, nullable, unique, values, min/max, regex, format, multiple_of) and the extra
expectations listed under ``quality.expectations``. Every entry carries its severity:

- ``block``: the batch is not committed (Delta unchanged), the ledger records the failed gate, the run stops;
- ``warn``: the batch is committed and the failure recorded;
- ``quarantine``: failing rows go to the quarantine table, the rest is committed. With ``mostly`` the batch is
  blocked when more than ``1 - mostly`` of its rows fail: a broken upstream stops instead of half the table
  disappearing into quarantine.

Type checks are table-level (the batch has one type per column) and always block. :func:`check_specs` validates
extra expectations against GX when zones.yaml is loaded (it imports GX, so only when some are declared).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from zones.model import Dataset

if TYPE_CHECKING:
    from zones.config import Project

# Declared logical type -> SQLAlchemy type names the staged column may reflect as (isinstance semantics).
TYPE_NAMES: dict[str, list[str]] = {
    "string": ["String"], "integer": ["Integer"], "decimal": ["Numeric"], "date": ["Date"],
    "timestamp": ["DateTime"], "boolean": ["Boolean"],
}
FORMAT_EXPECTATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "personnummer": ("expect_column_values_to_be_valid_personnummer", {"accept": "personnummer"}),
    "samordningsnummer": ("expect_column_values_to_be_valid_personnummer", {"accept": "samordningsnummer"}),
    "identitetsnummer": ("expect_column_values_to_be_valid_personnummer", {"accept": "any"}),
    "icd10_se": ("expect_column_values_to_be_icd10_se_code", {}),
}
COLUMN_ARGS = ("column", "column_A", "column_B")
LIST_ARGS = ("column_list",)


@dataclass(frozen=True)
class Spec:
    """One expectation of a suite: GX type and kwargs, our severity, and where it came from in zones.yaml."""

    type: str
    kwargs: dict[str, Any]
    severity: str
    origin: tuple[str, ...] = ()  # key path in zones.yaml

    @property
    def columns(self) -> list[str]:
        """The columns the expectation reads (``column``, ``column_A``/``column_B``, ``column_list``)."""
        cols = [str(self.kwargs[a]) for a in COLUMN_ARGS if a in self.kwargs]
        return cols + [str(c) for a in LIST_ARGS for c in self.kwargs.get(a, [])]

    @property
    def name(self) -> str:
        """Stable, value-free name used in reasons, reports and the ledger: ``type(columns)``."""
        short = self.type.removeprefix("expect_")
        return f"{short}({','.join(self.columns)})" if self.columns else short

    @property
    def mostly(self) -> float | None:
        m = self.kwargs.get("mostly")
        return float(m) if m is not None else None


@dataclass
class SuiteSpec:
    name: str
    specs: list[Spec] = field(default_factory=list)

    def add(self, type_: str, severity: str, origin: tuple[str, ...], **kwargs: Any) -> None:
        spec = Spec(type_, kwargs, severity, origin)
        if all(s.name != spec.name or s.kwargs != spec.kwargs for s in self.specs):
            self.specs.append(spec)


def promote_suite(name: str, ds: Dataset) -> SuiteSpec:
    """The promote suite of dataset ``name`` (see the module docstring for what goes in)."""
    suite = SuiteSpec(f"{name}.promote")
    base = ("datasets", name)
    default = ds.quality.severity
    keys = list(ds.primary_key)
    for k in keys:
        suite.add("expect_column_values_to_not_be_null", "quarantine", (*base, "primary_key"), column=k)
    if len(keys) == 1:
        suite.add("expect_column_values_to_be_unique", "quarantine", (*base, "primary_key"), column=keys[0])
    else:
        suite.add("expect_compound_columns_to_be_unique", "quarantine", (*base, "primary_key"), column_list=keys)
    for role in ("watermark", "business_date"):
        suite.add("expect_column_values_to_not_be_null", "quarantine", (*base, role), column=getattr(ds, role))
    for col, c in ds.columns.items():
        at = (*base, "columns", col)
        sev = c.severity or default
        if c.type:
            suite.add("expect_column_values_to_be_in_type_list", "block", (*at, "type"), column=col,
                      type_list=TYPE_NAMES[c.type])
        if not c.nullable:
            suite.add("expect_column_values_to_not_be_null", sev, (*at, "nullable"), column=col)
        if c.unique and [col] != keys:
            suite.add("expect_column_values_to_be_unique", sev, (*at, "unique"), column=col)
        if c.values is not None:
            suite.add("expect_column_values_to_be_in_set", sev, (*at, "values"), column=col, value_set=c.values)
        if c.min_ is not None or c.max_ is not None:
            bounds = {k: v for k, v in (("min_value", c.min_), ("max_value", c.max_)) if v is not None}
            suite.add("expect_column_values_to_be_between", sev, (*at, "min" if c.min_ is not None else "max"),
                      column=col, **bounds)
        if c.regex:
            suite.add("expect_column_values_to_match_regex", sev, (*at, "regex"), column=col, regex=c.regex)
        if c.format:
            type_, extra = FORMAT_EXPECTATIONS[c.format]
            suite.add(type_, sev, (*at, "format"), column=col, **extra)
        if c.multiple_of:
            suite.add("expect_column_values_to_be_multiple_of", sev, (*at, "multiple_of"), column=col,
                      base=c.multiple_of)
    for i, e in enumerate(ds.quality.expectations):
        suite.add(e.type, e.severity or default, (*base, "quality", "expectations", str(i)), **e.kwargs)
    return suite


def gx_value(v: Any, today: date) -> Any:
    """Config scalars to GX arguments: ISO dates become dates, ``today`` the run's date."""
    if v == "today":
        return today
    if isinstance(v, str) and len(v) == 10 and v[4] == "-" and v[7] == "-":
        try:
            return date.fromisoformat(v)
        except ValueError:
            return v
    return v


def check_specs(project: Project, datasets: list[str] | None = None) -> None:
    """Validate every expectation of the promote suites against GX: known name, valid kwargs, declared columns,
    and a row-level expectation where the severity is ``quarantine``. Raises ConfigError with file, line and fix.

    Runs in ``zones validate`` and before a promotion judges its first batch — not on every config load: it
    imports GX (~2.7 s), and a no-op run or ``zones status`` should not pay for that."""
    from quality.gx import UnknownExpectation, is_row_level, make_expectation  # imports GX

    for name, ds in project.config.datasets.items():
        if datasets is not None and name not in datasets:
            continue
        for spec in promote_suite(name, ds).specs:
            at = spec.origin
            try:
                expectation = make_expectation(spec, date.today())
            except UnknownExpectation as exc:
                close = difflib.get_close_matches(spec.type, exc.known, n=3, cutoff=0.6)
                raise project.error(f"unknown expectation {spec.type!r}", *at,
                                    fix=(f"did you mean {', '.join(map(repr, close))}? " if close else "")
                                    + "see https://greatexpectations.io/expectations or the datazones ones in "
                                    "quality/expectations.py") from None
            except Exception as exc:  # GX raises pydantic ValidationError or InvalidExpectationConfigurationError
                raise project.error(f"{spec.type}: invalid arguments: {_first_line(exc)}", *at,
                                    fix=f"give the arguments {spec.type} takes, e.g. column: <name>") from None
            for c in spec.columns:
                if c not in ds.columns:
                    raise project.error(f"{spec.type}: column {c!r} is not declared under `columns`", *at,
                                        fix=f"use one of: {', '.join(ds.columns)}")
            if spec.severity == "quarantine" and not is_row_level(type(expectation)):
                raise project.error(f"{spec.type} checks the whole batch, so its failing rows cannot be "
                                    "quarantined", *at, fix="use severity: block or warn for it")

def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[:3]) if lines else type(exc).__name__
