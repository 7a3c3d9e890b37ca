"""Great Expectations expectations for Swedish social-insurance data.

Imported only through :mod:`quality.gx` (GX costs ~2.7 s to import). Their SQL runs on the gate's DuckDB engine,
where :func:`install_macros` defines the helper macros; they are map expectations, so failing rows can be named
and quarantined. None of them puts a value in a message: results carry counts and row indexes only.

- ``expect_column_values_to_be_valid_personnummer(column, accept=personnummer|samordningsnummer|any,
  forms=stored|any)``: Luhn check digit over ``YYMMDDNNN``, birth number not 000, a real calendar date (29 Feb
  only in leap years); samordningsnummer day + 60, also month ``00`` and day ``60`` for an unknown month/day.
  ``forms: stored`` accepts the stored 12 digits only; ``any`` also ``YYYYMMDD-NNNC``, ``YYMMDD-NNNC`` and
  ``YYMMDD+NNNC`` (``+``: 100 years or older, the century counted back from the run's year). **Nulls fail.**
- ``expect_netto_to_equal_brutto_minus_skatt(column_list=[netto, brutto, skatt], tolerance=0)``.
- ``expect_period_to_be_ordered(column_A=from, column_B=tom)``: from ≤ tom; an open period (tom null) passes,
  a missing start fails.
- ``expect_column_values_to_be_multiple_of(column, base=100)``: e.g. bostadsbidrag in whole hundreds.
- ``expect_column_values_to_be_icd10_se_code(column)``: ``A00``-``Z99`` with an optional subcode of one or two
  digits and a Swedish extension letter, dot optional (``F32.1``, ``F43.8A``, ``M545``).
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal

import sqlalchemy as sa

from quality.defer import import_gx

import_gx()  # before GX's first import anywhere in the process: quality/defer.py
from great_expectations.execution_engine import SqlAlchemyExecutionEngine  # noqa: E402
from great_expectations.expectations.expectation import (  # noqa: E402
    ColumnMapExpectation,
    ColumnPairMapExpectation,
    MulticolumnMapExpectation,
)
from great_expectations.expectations.metrics.map_metric_provider import (  # noqa: E402
    ColumnMapMetricProvider,
    ColumnPairMapMetricProvider,
    MulticolumnMapMetricProvider,
    column_condition_partial,
    column_pair_condition_partial,
    multicolumn_condition_partial,
)

ICD10_SE = r"^[A-Z][0-9]{2}(\.?[0-9]{1,2}[A-Z]?)?$"

# DuckDB macros. dz_pnr12: any accepted form -> the 12 digits YYYYMMDDNNNC (NULL when not of that shape).
# dz_idnr_kind: 12 digits -> 'PNR', 'SAMNR' or NULL (invalid). Mirrors zones.personnummer (tests compare them).
MACROS = (
    """CREATE OR REPLACE MACRO dz_pnr12(c, any_form, ref_year) AS CASE
         WHEN regexp_full_match(c, '[0-9]{12}') THEN c
         WHEN any_form AND regexp_full_match(c, '[0-9]{8}-[0-9]{4}') THEN substr(c, 1, 8) || substr(c, 10, 4)
         WHEN any_form AND regexp_full_match(c, '[0-9]{6}[-+]?[0-9]{4}') THEN
           lpad(CAST(ref_year - ((ref_year - CAST(substr(c, 1, 2) AS INTEGER)) % 100)
                     - CASE WHEN contains(c, '+') THEN 100 ELSE 0 END AS VARCHAR), 4, '0')
           || substr(replace(replace(c, '-', ''), '+', ''), 3)
       END""",
    "CREATE OR REPLACE MACRO dz_luhn_ok(n) AS (10 - (" + " + ".join(
        f"CAST(substr(n, {3 + i}, 1) AS INTEGER)" if i % 2 else
        f"(2 * CAST(substr(n, {3 + i}, 1) AS INTEGER) - CASE WHEN substr(n, {3 + i}, 1) >= '5' THEN 9 ELSE 0 END)"
        for i in range(9)) + ") % 10) % 10 = CAST(substr(n, 12, 1) AS INTEGER)",
    """CREATE OR REPLACE MACRO dz_dim(y, m) AS
         day(last_day(make_date(greatest(y, 1), least(greatest(m, 1), 12), 1)))""",
    """CREATE OR REPLACE MACRO dz_idnr_kind(n) AS CASE
         WHEN n IS NULL OR substr(n, 9, 3) = '000' OR NOT dz_luhn_ok(n) THEN NULL
         WHEN CAST(substr(n, 7, 2) AS INTEGER) >= 60 THEN
           CASE WHEN CAST(substr(n, 5, 2) AS INTEGER) > 12 THEN NULL
                WHEN CAST(substr(n, 7, 2) AS INTEGER) = 60 THEN 'SAMNR'
                WHEN CAST(substr(n, 5, 2) AS INTEGER) = 0
                  THEN CASE WHEN CAST(substr(n, 7, 2) AS INTEGER) - 60 <= 31 THEN 'SAMNR' END
                WHEN CAST(substr(n, 7, 2) AS INTEGER) - 60
                     <= dz_dim(CAST(substr(n, 1, 4) AS INTEGER), CAST(substr(n, 5, 2) AS INTEGER)) THEN 'SAMNR'
           END
         WHEN CAST(substr(n, 5, 2) AS INTEGER) BETWEEN 1 AND 12
              AND CAST(substr(n, 7, 2) AS INTEGER) BETWEEN 1
                  AND dz_dim(CAST(substr(n, 1, 4) AS INTEGER), CAST(substr(n, 5, 2) AS INTEGER)) THEN 'PNR'
       END""",
)


def install_macros(raw_duckdb_connection: Any) -> None:
    for m in MACROS:
        raw_duckdb_connection.execute(m)


def _quoted(column: Any) -> str:
    return '"' + str(column.name).replace('"', '""') + '"'


class ColumnValuesValidPersonnummer(ColumnMapMetricProvider):
    condition_metric_name = "column_values.dz_valid_personnummer"
    condition_value_keys = ("accept", "forms")
    filter_column_isnull = False  # a null identity number is a failure, not a skipped row

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)  # type: ignore[untyped-decorator]
    def _sqlalchemy(cls, column: Any, accept: str = "any", forms: str = "stored", **kwargs: Any) -> Any:
        kinds = {"personnummer": "('PNR')", "samordningsnummer": "('SAMNR')", "any": "('PNR', 'SAMNR')"}[accept]
        any_form = "TRUE" if forms == "any" else "FALSE"
        expr = (f"COALESCE(dz_idnr_kind(dz_pnr12(CAST({_quoted(column)} AS VARCHAR), {any_form}, "
                f"{date.today().year})) IN {kinds}, FALSE)")
        return sa.literal_column(expr, type_=sa.Boolean)


class ExpectColumnValuesToBeValidPersonnummer(ColumnMapExpectation):
    """Expect valid Swedish personnummer and/or samordningsnummer (check digit, real date); nulls fail."""

    accept: Literal["personnummer", "samordningsnummer", "any"] = "any"
    forms: Literal["stored", "any"] = "stored"
    map_metric = "column_values.dz_valid_personnummer"
    success_keys = ("mostly", "accept", "forms")
    args_keys = ("column", "accept")
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production", "tags": ["datazones", "sweden"]}


class MulticolumnNettoEqualsBruttoMinusSkatt(MulticolumnMapMetricProvider):
    condition_metric_name = "multicolumn_values.dz_netto_brutto_skatt"
    condition_domain_keys = ("batch_id", "table", "column_list", "row_condition", "condition_parser",
                             "ignore_row_if")
    condition_value_keys = ("tolerance",)

    @multicolumn_condition_partial(engine=SqlAlchemyExecutionEngine)  # type: ignore[untyped-decorator]
    def _sqlalchemy(cls, column_list: list[Any], tolerance: float = 0, **kwargs: Any) -> Any:
        netto, brutto, skatt = column_list
        return sa.func.abs(netto - (brutto - skatt)) <= tolerance


class ExpectNettoToEqualBruttoMinusSkatt(MulticolumnMapExpectation):
    """Expect netto = brutto − skatt per row; ``column_list`` is ``[netto, brutto, skatt]`` in that order."""

    tolerance: float = 0
    ignore_row_if: Literal["all_values_are_missing", "any_value_is_missing", "never"] = "all_values_are_missing"
    map_metric = "multicolumn_values.dz_netto_brutto_skatt"
    success_keys = ("mostly", "tolerance", "ignore_row_if")
    args_keys = ("column_list",)
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production", "tags": ["datazones", "sweden"]}


class ColumnPairPeriodOrdered(ColumnPairMapMetricProvider):
    condition_metric_name = "column_pair_values.dz_period_ordered"
    condition_domain_keys = ("batch_id", "table", "column_A", "column_B", "row_condition", "condition_parser",
                             "ignore_row_if")

    @column_pair_condition_partial(engine=SqlAlchemyExecutionEngine)  # type: ignore[untyped-decorator]
    def _sqlalchemy(cls, column_A: Any, column_B: Any, **kwargs: Any) -> Any:
        return sa.and_(column_A.isnot(None), sa.or_(column_B.is_(None), column_A <= column_B))


class ExpectPeriodToBeOrdered(ColumnPairMapExpectation):
    """Expect a period's start (column_A) on or before its end (column_B); an open end passes, no start fails."""

    ignore_row_if: Literal["both_values_are_missing", "either_value_is_missing", "neither"] = "neither"
    map_metric = "column_pair_values.dz_period_ordered"
    success_keys = ("mostly", "ignore_row_if")
    args_keys = ("column_A", "column_B")
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production", "tags": ["datazones"]}


class ColumnValuesMultipleOf(ColumnMapMetricProvider):
    condition_metric_name = "column_values.dz_multiple_of"
    condition_value_keys = ("base",)

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)  # type: ignore[untyped-decorator]
    def _sqlalchemy(cls, column: Any, base: int = 100, **kwargs: Any) -> Any:
        return column % base == 0


class ExpectColumnValuesToBeMultipleOf(ColumnMapExpectation):
    """Expect whole multiples of ``base`` (e.g. bostadsbidrag in hundreds)."""

    base: int = 100
    map_metric = "column_values.dz_multiple_of"
    success_keys = ("mostly", "base")
    args_keys = ("column", "base")
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production", "tags": ["datazones", "sweden"]}


class ColumnValuesIcd10Se(ColumnMapMetricProvider):
    condition_metric_name = "column_values.dz_icd10_se"

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)  # type: ignore[untyped-decorator]
    def _sqlalchemy(cls, column: Any, **kwargs: Any) -> Any:
        return sa.literal_column(f"regexp_matches(CAST({_quoted(column)} AS VARCHAR), '{ICD10_SE}')",
                                 type_=sa.Boolean)


class ExpectColumnValuesToBeIcd10SeCode(ColumnMapExpectation):
    """Expect ICD-10-SE diagnosis codes: letter, two digits, optional subcode and Swedish extension letter."""

    map_metric = "column_values.dz_icd10_se"
    success_keys = ("mostly",)
    args_keys = ("column",)
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production", "tags": ["datazones", "sweden"]}


CUSTOM = (ExpectColumnValuesToBeValidPersonnummer, ExpectNettoToEqualBruttoMinusSkatt, ExpectPeriodToBeOrdered,
          ExpectColumnValuesToBeMultipleOf, ExpectColumnValuesToBeIcd10SeCode)
