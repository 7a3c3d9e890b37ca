"""``zones validate``: check zones.yaml against the live hot store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import sqlalchemy as sa

from zones.config import Project
from zones.errors import ConfigError
from zones.hot import make_engine, reflect
from zones.model import Dispose


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning
    where: str  # file:line
    key_path: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        fix = f" — fix: {self.fix}" if self.fix else ""
        return f"{self.level.upper()} {self.where}: {self.key_path}: {self.message}{fix}"


# Declared type -> the Arrow types of the hot column that satisfy the gate's type check (quality/suites.TYPE_NAMES)
_TYPE_OK: dict[str, Callable[[pa.DataType], bool]] = {
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "integer": pa.types.is_integer,
    "decimal": lambda t: pa.types.is_decimal(t) or pa.types.is_floating(t),
    "date": pa.types.is_date,
    "timestamp": pa.types.is_timestamp,
    "boolean": pa.types.is_boolean,
}


def _family(t: pa.DataType) -> str | None:
    return next((name for name, ok in _TYPE_OK.items() if ok(t)), None)


def validate_live(project: Project) -> list[Finding]:
    findings: list[Finding] = []
    engine = make_engine(project.hot_url)
    file = str(project.file)
    try:
        with engine.connect() as c:
            c.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        return [Finding("error", f"{file}:{project.line_of('hot', 'url') or 1}", "hot.url",
                        f"cannot connect to the hot store: {type(exc).__name__}",
                        "check DATAZONES__HOT__URL / hot.url and that the database is running")]
    try:
        insp = sa.inspect(engine)
        for name, ds in project.config.datasets.items():
            base = ("datasets", name)
            cold = ds.retention.cold
            if isinstance(cold, Dispose) and cold.placeholder:
                findings.append(Finding(
                    "warning", f"{file}:{project.line_of(*base, 'retention', 'cold', 'basis')}",
                    f"datasets.{name}.retention.cold.basis",
                    f"{cold.basis!r} is marked as a placeholder: its packages are archived and kept, and "
                    "`zones dispose` will not dispose of them", "cite the RA-FS/RA-MS or decision that allows it"))
            try:
                hot = reflect(engine, ds.table, ds.schema_ or project.config.hot.schema_)
            except ConfigError as exc:
                findings.append(Finding("error", f"{file}:{project.line_of(*base, 'table')}",
                                        f"datasets.{name}.table", str(exc).removesuffix(f"\n  fix: {exc.fix}"),
                                        exc.fix or ""))
                continue
            for col in ds.columns:
                if col not in hot.columns:
                    findings.append(Finding(
                        "error", f"{file}:{project.line_of(*base, 'columns', col)}", f"datasets.{name}.columns.{col}",
                        f"column {col!r} does not exist in hot table {ds.table!r} (it has: {', '.join(hot.columns)})",
                        "fix the name or remove the column"))
            for col, decl in ds.columns.items():
                typ = hot.columns.get(col)
                if decl.type is not None and typ is not None and not _TYPE_OK[decl.type](typ):
                    findings.append(Finding(
                        "error", f"{file}:{project.line_of(*base, 'columns', col, 'type')}",
                        f"datasets.{name}.columns.{col}.type",
                        f"declared type {decl.type!r}, but hot column {col!r} is {hot.sql_types[col]} ({typ}): the "
                        "quality gate's type check would block every batch",
                        f"declare `type: {_family(typ)}`" if _family(typ) else "fix the declared type"))
            for col in hot.columns:
                if col not in ds.columns:
                    findings.append(Finding(
                        "warning" if ds.on_new_column != "fail" else "error",
                        f"{file}:{project.line_of(*base, 'columns')}", f"datasets.{name}.columns",
                        f"hot column {col!r} ({hot.sql_types[col]}) is not declared; on_new_column="
                        f"{ds.on_new_column} — it will be {'added raw' if ds.on_new_column == 'add' else 'skipped'}",
                        f"declare `{col}:` with its personal-data class and warm policy"))
            schema = ds.schema_ or project.config.hot.schema_
            if ds.watermark in hot.columns and not _leads_an_index(insp, ds.table, schema, ds.watermark):
                q = engine.dialect.identifier_preparer.quote
                table = f"{q(schema)}.{q(ds.table)}" if schema else q(ds.table)
                cols = ", ".join(q(c) for c in (ds.watermark, *ds.primary_key))
                findings.append(Finding(
                    "warning", f"{file}:{project.line_of(*base, 'watermark')}", f"datasets.{name}.watermark",
                    f"no index of hot table {ds.table!r} starts with the watermark column {ds.watermark!r}: every "
                    "incremental promotion reads the whole table to find the changed rows",
                    f"CREATE INDEX {q(ds.table + '_' + ds.watermark + '_idx')} ON {table} ({cols})"))
    finally:
        engine.dispose()
    return findings


def _leads_an_index(insp: sa.Inspector, table: str, schema: str | None, column: str) -> bool:
    """Whether an index, the primary key or a unique constraint of ``table`` has ``column`` first."""
    cols: list[list[str | None]] = [list(ix["column_names"]) for ix in insp.get_indexes(table, schema=schema)]
    cols.append(list(insp.get_pk_constraint(table, schema=schema).get("constrained_columns") or []))
    cols += [list(u["column_names"]) for u in insp.get_unique_constraints(table, schema=schema)]
    firsts = {c[0] for c in cols if c}
    return column in firsts
