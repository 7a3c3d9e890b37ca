"""Quarantine you can work with: list, show (keys and reasons, never values) and release.

``release`` takes one quarantined batch and

- **re-validates** (default): reads the *current* hot rows for the quarantined keys (the source was corrected),
  runs them through the dataset's gate and promotes those that now pass (MERGE: the newer watermark wins, so a
  row an incremental run already brought in is not duplicated); rows that still fail stay quarantined;
- or **overrides** (``override_by`` + ``reason``): promotes the quarantined originals as they are, without the
  quality suite (key and types still have to be valid). Who and why go into the hash-chained ledger.

Released rows are marked ``_dz_released`` in the quarantine table (kept as the record of what happened). A crash
between the warm MERGE and the marking is harmless: the rerun merges the same row versions again (no change) and
marks them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from lifecycle.ledger import Ledger
from lifecycle.locks import writer_lock
from lifecycle.protect import Keys, load_keys, open_sealed
from lifecycle.transform import (
    comparable_columns,
    constant,
    crypto_columns,
    dense_columns,
    plan_columns,
    stale_keys,
    to_warm,
)
from lifecycle.warm import WarmTable
from quality.gate import Gate
from zones.config import Project
from zones.errors import TerminalError
from zones.hot import RAW_COLUMN, make_engine, reflect, rows_to_arrow


@dataclass
class ReleaseReport:
    dataset: str
    batch_id: str
    mode: str  # revalidated | override
    rows: int = 0  # open quarantined rows of the batch
    released: int = 0
    still_failing: int = 0
    gone_from_hot: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why rows still fail


def open_rows(project: Project, dataset: str, batch_id: str | None = None) -> pa.Table:
    """Quarantined rows not yet released (all columns; ``_dz_row`` is sealed)."""
    q = WarmTable(project.quarantine_uri(dataset), project.storage_options("warm"))
    if not q.exists():
        return pa.table({})
    t = q.to_arrow()
    mask = pc.invert(pc.fill_null(t.column("_dz_released"), False))
    if batch_id:
        mask = pc.and_(mask, pc.equal(t.column("_dz_batch"), batch_id))
    return t.filter(mask)


def require_batch(project: Project, dataset: str, batch_id: str) -> None:
    """Raise unless ``batch_id`` ever put rows into ``dataset``'s quarantine (open or released)."""
    q = WarmTable(project.quarantine_uri(dataset), project.storage_options("warm"))
    batches = set(q.to_arrow(columns=["_dz_batch"]).column("_dz_batch").to_pylist()) if q.exists() else set()
    if batch_id not in batches:
        known = f"its latest batches: {', '.join(sorted(batches)[-5:])}" if batches else "it is empty"
        raise TerminalError(f"no batch {batch_id!r} in the quarantine of {dataset!r} ({known}); "
                            f"`zones quarantine list {dataset}` lists its batches")


def summary(project: Project, dataset: str) -> list[dict[str, Any]]:
    """Per batch: open and released row counts and the reasons (check names) of the open ones."""
    q = WarmTable(project.quarantine_uri(dataset), project.storage_options("warm"))
    if not q.exists():
        return []
    t = q.to_arrow(columns=["_dz_batch", "_dz_reason", "_dz_released", "_dz_at"])
    out: dict[str, dict[str, Any]] = {}
    open_reasons: dict[str, list[str]] = {}
    for b, r, rel, at in zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True):
        e = out.setdefault(b, {"dataset": dataset, "batch_id": b, "open": 0, "released": 0, "at": str(at)})
        e["released" if rel else "open"] += 1
        if not rel:
            open_reasons.setdefault(b, []).append(r or "")
    return [{**e, "reasons": _reason_counts(open_reasons.get(b, []))} for b, e in sorted(out.items())]


def _reason_counts(reasons: list[str]) -> dict[str, int]:
    """``["a;b", "a"]`` -> ``{"a": 2, "b": 1}``: how many rows failed each check."""
    return dict(Counter(part for r in reasons for part in r.split(";") if part))


def release(project: Project, dataset: str, batch_id: str, *, gate: Gate | None = None, keys: Keys | None = None,
            override_by: str | None = None, reason: str | None = None, ledger: Ledger | None = None
            ) -> ReleaseReport:
    if (override_by is None) != (reason is None):
        raise TerminalError("an override needs both who (--by) and why (--reason); they go into the ledger")
    ds = project.dataset(dataset)
    mode = "override" if override_by else "revalidated"
    report = ReleaseReport(dataset, batch_id, mode)
    rows = open_rows(project, dataset, batch_id)
    report.rows = rows.num_rows
    if rows.num_rows == 0:
        require_batch(project, dataset, batch_id)  # an unknown batch is an error; a fully released one is not
        return report
    keys = keys or load_keys(need_seal=True)
    engine = make_engine(project.hot_url)
    own_ledger = ledger is None
    ledger = ledger or Ledger(project.ledger_url)
    try:
        hot = reflect(engine, ds.table, ds.schema_ or project.config.hot.schema_)
        plans = plan_columns(dataset, ds, hot, file=str(project.file))
        originals = [json.loads(s) for s in open_sealed(rows.column("_dz_row"), keys,
                                                         aad=f"datazones:{dataset}:_quarantine".encode()).to_pylist()]
        names = list(hot.columns)
        pk = list(ds.primary_key)
        if mode == "override":
            data, bad = rows_to_arrow([[o.get(n) for n in names] for o in originals], names, hot.columns)
        else:
            data, bad = _current_hot(engine, hot.table, pk, originals, names, hot.columns)
            report.gone_from_hot = len(originals) - data.num_rows
        if mode == "override":
            unusable = pc.or_(bad, _null_any(data, pk))
            passed = data.filter(pc.invert(unusable))
            report.still_failing = int(pc.sum(unusable).as_py() or 0)
            if report.still_failing:
                report.reasons["wrong_type_or_null_key"] = report.still_failing
        else:
            from lifecycle.promote import default_gate

            outcome = (gate or default_gate(dataset, ds)).check(data, bad_type=bad, dataset=ds)
            if outcome.blocked:
                raise TerminalError(f"release of {batch_id}: the gate blocks these rows: "
                                    f"{outcome.blocking_summary()}")
            passed = outcome.passed
            report.still_failing = outcome.rejected.num_rows
            report.reasons = _reason_counts(outcome.reasons.to_pylist())
        if RAW_COLUMN in passed.column_names:
            passed = passed.drop_columns([RAW_COLUMN])
        warm = WarmTable(project.warm_table_uri(dataset), project.storage_options("warm"),
                         opaque_columns=crypto_columns(plans), dense_columns=dense_columns(ds))
        qwarm = WarmTable(project.quarantine_uri(dataset), project.storage_options("warm"))
        with writer_lock(ledger.engine, f"warm.{dataset}", wait=True) as held:
            status = ledger.batch_status(batch_id)
            if status != "committed":  # an interrupted promotion: its rerun abandons the batch and re-reads its
                raise TerminalError(  # rows, so releasing them now would put them in warm twice
                    f"batch {batch_id} of {dataset!r} is {status or 'unknown to the ledger'}, not committed: "
                    f"its promotion was interrupted. Run `zones promote {dataset}` first (it repairs the batch and "
                    "re-judges its rows), then release what is still quarantined")
            held.verify()
            if passed.num_rows:
                out = to_warm(dataset, ds, plans, passed, keys, "")
                out = out.set_column(out.schema.get_field_index("_dz_batch"), "_dz_batch",
                                     constant(f"{batch_id}/release", out.num_rows))
                aid = f"datazones/release/{dataset}"
                meta = {"datazones.release_of": batch_id, "datazones.mode": mode}
                partition = ["_dz_period"] if ds.partition_by != "none" else None
                if warm.exists():
                    warm.merge(out, keys=pk, newer=ds.watermark, app_id=aid, seq=warm.committed(aid) + 1,
                               compare=comparable_columns(plans, ds), stale=stale_keys(ds, plans, passed, keys),
                               meta=meta, merge_schema=warm.check_schema(out.schema))
                else:
                    warm.append(out, partition_by=partition, app_id=aid, seq=1, meta=meta, merge_schema=False)
            released = _released_positions(rows, originals, passed, pk)
            report.released = len(released)
            if released:
                _mark_released(qwarm, rows, released)
            ledger.append("quarantine.released", dataset=dataset, batch_id=batch_id, mode=mode,
                          released=report.released, still_failing=report.still_failing,
                          gone_from_hot=report.gone_from_hot, by=override_by, reason=reason)
    finally:
        engine.dispose()
        if own_ledger:
            ledger.dispose()
    return report


def _null_any(data: pa.Table, cols: list[str]) -> pa.Array:
    m = pa.array([False] * data.num_rows, pa.bool_())
    for c in cols:
        m = pc.or_(m, pc.is_null(data.column(c)))
    return m


def _current_hot(engine: sa.Engine, table: sa.Table, pk: list[str], originals: list[dict[str, Any]],
                 names: list[str], types: dict[str, pa.DataType]) -> tuple[pa.Table, pa.Array]:
    wanted = [tuple(o.get(k) for k in pk) for o in originals if all(o.get(k) is not None for k in pk)]
    cols = [table.c[k] for k in pk]
    cond = cols[0].in_([w[0] for w in wanted]) if len(pk) == 1 else sa.tuple_(*cols).in_(wanted)
    if not wanted:
        return rows_to_arrow([], names, types)
    # Raw driver values, as the promotion's hot reader reads them: SQLAlchemy's result processors would convert
    # (and on SQLite choke on, e.g. '2026-02-30' in a DATE column) the very values the gate must flag as wrong_type.
    query = sa.select(*[table.c[n] for n in names]).where(cond)
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    try:
        with engine.connect() as c:
            found = [list(r) for r in c.exec_driver_sql(sql)]
    except sa.exc.DBAPIError as exc:  # its text would quote the statement, keys (personnummer, maybe) and all
        raise TerminalError(f"reading the quarantined rows' current versions from hot table {table.name!r} failed: "
                            f"{type(exc.orig).__name__} (statement not shown: it lists the rows' keys)") from None
    return rows_to_arrow(found, names, types)


def _released_positions(rows: pa.Table, originals: list[dict[str, Any]], passed: pa.Table,
                        pk: list[str]) -> list[int]:
    done = {tuple(str(v) for v in r) for r in zip(*(passed.column(k).to_pylist() for k in pk), strict=True)}
    return [i for i, o in enumerate(originals) if tuple(str(o.get(k)) for k in pk) in done]


def _mark_released(qwarm: WarmTable, rows: pa.Table, positions: list[int]) -> None:
    """Set ``_dz_released`` on exactly these quarantine rows (by batch and sealed payload, which is unique)."""
    sealed = rows.column("_dz_row").take(pa.array(positions)).to_pylist()
    batch = rows.column("_dz_batch")[0].as_py()
    hexes = ", ".join(f"X'{bytes(s).hex()}'" if isinstance(s, bytes | bytearray) else f"'{s}'" for s in sealed)
    qwarm.update(f"_dz_batch = '{batch}' AND _dz_row IN ({hexes})", {"_dz_released": "true"},
                 meta={"datazones.released_from": batch})
