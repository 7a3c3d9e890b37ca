"""Purge hot: delete rows past ``hot keep`` — only those whose identical current version is verified elsewhere.

A candidate (its retention clock passed) is purged only if warm holds the same key **and the same watermark** (the
version promotion verified and committed), or a verified archive package holds it. The delete statement itself
repeats the watermark condition, so a row changed after the check is never deleted. Held rows are skipped. Work goes
in bounded batches, each one transaction plus one ledger event (counts and a digest of the keys — never the keys).
The library default is a plan (``execute=False``); the CLI and DAGs ask for deletion explicitly.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from lifecycle import holds as holds_mod
from lifecycle.ledger import Ledger
from lifecycle.promote import fault
from lifecycle.protect import Keys, canonical_text, load_keys, pseudonymise
from lifecycle.report import TransitionReport
from lifecycle.warm import WarmTable
from zones.config import Project
from zones.hot import make_engine, reflect, rows_to_arrow

TRANSITION = "purge"


def _candidates(project: Project, dataset: str, as_of: datetime) -> tuple[pa.Table, sa.Table, sa.Engine]:
    ds = project.dataset(dataset)
    eng = make_engine(project.hot_url)
    hot = reflect(eng, ds.table, ds.schema_ or project.config.hot.schema_)
    clock = ds.retention.hot.from_ or ds.business_date
    cutoff = ds.retention.hot.keep.subtract_from(as_of)
    t = hot.table
    cols = list(dict.fromkeys([*ds.primary_key, ds.watermark, ds.business_date,
                               *(c for c in (ds.case_key, ds.person_key) if c)]))
    bound = cutoff if eng.dialect.name == "postgresql" else cutoff.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    clock_col = t.c[clock] if eng.dialect.name == "postgresql" else sa.type_coerce(t.c[clock], sa.String)
    if eng.dialect.name != "postgresql" and "date" in hot.sql_types[clock].lower() and "time" not in \
            hot.sql_types[clock].lower():
        bound = cutoff.date().isoformat()
    q = sa.select(*[t.c[c] for c in cols]).where(clock_col.is_not(None), clock_col <= bound)
    sql = str(q.compile(dialect=eng.dialect, compile_kwargs={"literal_binds": True}))
    with eng.connect() as c:
        rows = c.exec_driver_sql(sql).fetchall()
    data, _ = rows_to_arrow(rows, cols, {c: hot.columns[c] for c in cols})
    return data, t, eng


def _version_key(table: pa.Table, cols: list[str]) -> pa.Array:
    return pc.binary_join_element_wise(*[pc.fill_null(canonical_text(table.column(c).combine_chunks()), "")
                                         for c in cols], "\x1f")


def purge(project: Project, dataset: str, *, as_of: datetime | None = None, execute: bool = False,
          batch_size: int = 5000, keys: Keys | None = None, ledger: Ledger | None = None) -> TransitionReport:
    t0 = time.perf_counter()
    ds = project.dataset(dataset)
    as_of = as_of or datetime.now(UTC)
    keys = keys or load_keys(need_seal=False)
    report = TransitionReport(TRANSITION, dataset, mode="execute" if execute else "plan")
    own = ledger is None
    ledger = ledger or Ledger(project.ledger_url)
    cand, table, eng = _candidates(project, dataset, as_of)
    try:
        report.rows_read = cand.num_rows
        if cand.num_rows == 0:
            return report
        # 1. the identical version is in warm (keys as warm stores them: pseudonymised under the current key or,
        # for rows not promoted again since a rotation, under a retired one)
        warm = WarmTable(project.warm_table_uri(dataset), project.storage_options("warm"))
        vcols = [*ds.primary_key, ds.watermark]
        ok = pa.repeat(False, cand.num_rows)
        if warm.exists():
            in_warm = _version_key(warm.to_arrow(columns=vcols), vcols)
            pseud = [k for k in ds.primary_key if ds.columns[k].warm == "pseudonymise"]
            for key in dict.fromkeys([keys.pseudonym_key, *keys.retired_pseudonym_keys]) if pseud else [b""]:
                as_warm = cand.select(vcols)
                for k in pseud:
                    i = as_warm.schema.get_field_index(k)
                    as_warm = as_warm.set_column(i, k, pseudonymise(as_warm.column(k), key))
                ok = pc.or_(ok, pc.is_in(_version_key(as_warm, vcols), value_set=in_warm))
        # 2. or in a verified archive package (the authentic CSV holds raw keys and the watermark)
        archived = _archived_versions(ledger, dataset, vcols)
        if archived is not None:
            ok = pc.or_(ok, pc.is_in(_version_key(cand, vcols), value_set=archived))
        ok = pc.fill_null(ok, False)
        hold_list = holds_mod.active(ledger, dataset)
        held = holds_mod.held_mask(project, dataset, cand, hold_list,
                                   person_keys=holds_mod.resolve_people(project, hold_list, keys, zone="hot"))
        report.checks["not_verified_elsewhere"] = int(pc.sum(pc.invert(ok)).as_py() or 0)
        report.checks["rows_held"] = int(pc.sum(pc.and_(ok, held)).as_py() or 0)
        todo = cand.filter(pc.and_(ok, pc.invert(held))).select(vcols)
        report.checks["purgeable"] = todo.num_rows
        if execute and todo.num_rows:
            report.rows_deleted = _delete(eng, table, todo, vcols, ledger, dataset, batch_size)
    finally:
        eng.dispose()
        if own:
            ledger.dispose()
    report.add_time("total", time.perf_counter() - t0)
    return report


def _archived_versions(ledger: Ledger, dataset: str, vcols: list[str]) -> pa.Array | None:
    from lifecycle.cold_status import package_rows
    from lifecycle.fixity import locate

    found = []
    for p in package_rows(ledger, dataset):
        if p["status"] != "verified":
            continue
        pkg_dir, _ = locate(Path(p["path"]))
        csv = pkg_dir / "representations" / "rep1" / "data" / f"{dataset}.csv"
        opts = pacsv.ConvertOptions(include_columns=vcols, column_types=dict.fromkeys(vcols, pa.string()))
        found.append(_version_key(pacsv.read_csv(csv, convert_options=opts), vcols))
    return pa.concat_arrays(found) if found else None


def _delete(eng: sa.Engine, table: sa.Table, todo: pa.Table, vcols: list[str], ledger: Ledger, dataset: str,
            batch_size: int) -> int:
    sqlite = eng.dialect.name == "sqlite"

    def col(c: str) -> sa.ColumnElement[Any]:
        is_time = isinstance(table.c[c].type, sa.DateTime | sa.Date)
        return sa.type_coerce(table.c[c], sa.String) if sqlite and is_time else table.c[c]

    stmt = sa.delete(table).where(*[col(c) == sa.bindparam(f"b_{c}") for c in vcols])
    deleted = 0
    for start in range(0, todo.num_rows, batch_size):
        chunk = todo.slice(start, batch_size)
        params = []
        for r in chunk.to_pylist():
            if sqlite:  # compare with the stored text forms
                r = {k: (v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v)
                     for k, v in r.items()}
            params.append({f"b_{k}": v for k, v in r.items()})
        with eng.begin() as c:
            n = c.execute(stmt.execution_options(synchronize_session=False), params).rowcount
            digest = hashlib.sha256("\n".join(str(sorted(p.items())) for p in params).encode()).hexdigest()
            deleted += max(n, 0)
        ledger.append("purge.batch", dataset=dataset, rows=max(n, 0), planned=len(params), keys_sha256=digest)
        fault("purge_after_batch")
    return deleted
