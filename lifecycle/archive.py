"""Archive warm → cold: E-ARK SIP packages (= Riksarkivet FGS 2.0) of the rows whose warm retention has passed.

Per dataset and business period (``archive.period``), the due rows are restored to their **authentic** form
(sealed originals opened, every value as canonical text) and written as one package: RFC 4180 UTF-8 CSV in key
order, Table Schema, documentation, Dublin Core, PREMIS and METS, wrapped in a BagIt bag. Crash-safe order:

1. build in ``<cold>/.staging`` → 2. bag and rename into ``<cold>/<dataset>/`` → 3. **verify from storage**
(every checksum recomputed, bag fully validated, the CSV re-read and reconciled: row count and an
order-independent content hash equal to the warm rows'; the E-ARK reference validator when available) →
4. ledger: package *verified* → 5. read-only → 6. only with ``execute=True``: delete exactly those row versions
from warm (a MERGE on key + watermark, held rows excluded), ledger.

Anything not yet verified in the ledger is unfinished work: a rerun removes it and builds again. A verified
package whose warm rows were not yet deleted is not rebuilt; the rerun finishes the delete. Rows a verified
package of the period already holds, exactly as they are (rows a hold kept in warm), are never packaged again:
a later run leaves them to that package (and deletes them under it once the hold is released); only rows no
package holds (late rows, new versions) go into a new package of the period.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads

from lifecycle import holds as holds_mod
from lifecycle.ledger import Ledger
from lifecycle.locks import writer_lock
from lifecycle.protect import Keys, canonical_text, load_keys, open_sealed
from lifecycle.report import TransitionReport
from lifecycle.transform import META_COLS, SEALED_SUFFIX, seal_aad
from lifecycle.warm import WarmTable
from zones.config import Project
from zones.errors import IntegrityError, TerminalError
from zones.hot import make_engine, reflect
from zones.model import Dataset, Dispose

log = logging.getLogger("datazones.archive")
TRANSITION = "archive"
FAULT_POINTS = ("archive_after_build", "archive_after_move", "archive_after_verified", "archive_after_warm_delete")
NULL_MARK, SEP = "\x1e", "\x1f"


@dataclass(frozen=True)
class Period:
    label: str
    start: date
    end: date


def period_bounds(label: str) -> Period:
    if len(label) == 4:
        y = int(label)
        return Period(label, date(y, 1, 1), date(y, 12, 31))
    y, m = int(label[:4]), int(label[5:7])
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return Period(label, date(y, m, 1), date.fromordinal(nxt.toordinal() - 1))


def row_digests(table: pa.Table, *, sort: bool = False) -> Any:
    """Each row's SHA-256 (hex) over its text columns joined by SEP, nulls as NULL_MARK (a polars Series)."""
    import polars as pl
    import polars_hash  # noqa: F401

    cols = [pc.fill_null(c.cast(pa.string()), NULL_MARK) for c in table.columns]
    joined = pc.binary_join_element_wise(*cols, SEP) if len(cols) > 1 else cols[0]
    s = pl.from_arrow(joined)
    assert isinstance(s, pl.Series)
    expr = pl.col("r").chash.sha2_256()  # type: ignore[attr-defined]
    return s.to_frame("r").select(expr.sort() if sort else expr).to_series()


def content_hash(table: pa.Table) -> str:
    """Order-independent hash of rows given as text columns: sha256 over the sorted per-row sha256 digests."""
    if table.num_rows == 0:
        return hashlib.sha256(b"").hexdigest()
    arr = row_digests(table, sort=True).to_arrow().cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    h = hashlib.sha256()  # = sha256 of the sorted hex digests concatenated, straight from the Arrow buffer
    data = arr.buffers()[2]
    start = arr.offset * 64
    h.update(memoryview(data)[start: start + 64 * len(arr)])
    return h.hexdigest()


def authentic_columns(dataset: str, ds: Dataset, warm_rows: pa.Table, keys: Keys) -> pa.Table:
    """Warm rows → the authentic record as text columns, in hot column order (sealed originals opened)."""
    out: dict[str, pa.Array] = {}
    for name in warm_rows.column_names:
        if name in META_COLS or name.endswith(SEALED_SUFFIX):
            if name.endswith(SEALED_SUFFIX) and name.removesuffix(SEALED_SUFFIX) not in warm_rows.column_names:
                base = name.removesuffix(SEALED_SUFFIX)  # a dropped column kept only sealed
                out[base] = open_sealed(warm_rows.column(name), keys, aad=seal_aad(dataset, base))
            continue
        col = ds.columns.get(name)
        if col is None or col.warm == "keep":
            out[name] = canonical_text(warm_rows.column(name).combine_chunks())
        elif col.sealed:
            out[name] = open_sealed(warm_rows.column(name + SEALED_SUFFIX), keys, aad=seal_aad(dataset, name),
                                    pseudonyms=warm_rows.column(name) if col.warm == "pseudonymise" else None)
        # a lossy, unsealed column with a cited basis is not in the authentic record: the package says so
    return pa.table(out)


def check_archivable(dataset: str, ds: Dataset) -> None:
    lost = [n for n, c in ds.columns.items() if c.lossy and not c.sealed and not c.basis]
    if lost:
        raise TerminalError(
            f"dataset {dataset!r} cannot be archived: column(s) {', '.join(lost)} reach warm lossy "
            f"({', '.join(ds.columns[n].warm for n in lost)}) with neither a sealed original nor a cited decision. "
            "Archiving without them would be disposal (gallring) of the authentic record. Add `sealed: true` "
            "(then re-promote) or `basis:` citing the decision (RA-FS/RA-MS/law) that allows the loss.")


def _cutoff_expr(ds: Dataset, schema: pa.Schema, as_of: datetime) -> tuple[pads.Expression, Any]:
    clock = ds.clock_column
    cutoff = ds.retention.warm.keep.subtract_from(as_of)
    typ = schema.field(clock).type
    value: Any = cutoff.date() if pa.types.is_date(typ) else cutoff
    return (pads.field(clock) <= pa.scalar(value, typ)) & pads.field(clock).is_valid(), value


def due_periods(project: Project, dataset: str, as_of: datetime) -> dict[str, int]:
    ds = project.dataset(dataset)
    warm = WarmTable(project.warm_table_uri(dataset), project.storage_options("warm"))
    if not warm.exists():
        return {}
    dset = warm.dataset()
    flt, _ = _cutoff_expr(ds, dset.schema, as_of)
    t = warm.to_arrow(columns=[ds.business_date], filter=flt)
    if t.num_rows == 0:
        return {}
    labels = holds_mod.period_label(t.column(ds.business_date), ds.archive.period)
    counts = pa.table({"p": labels}).group_by("p").aggregate([([], "count_all")])
    return dict(zip(counts["p"].to_pylist(), counts["count_all"].to_pylist(), strict=True))


def archive(project: Project, dataset: str, *, as_of: datetime | None = None, execute: bool = False,
            keys: Keys | None = None, ledger: Ledger | None = None, operator: str = "datazones",
            reference_validator: bool = True) -> TransitionReport:
    """Package every due period of ``dataset``; with ``execute`` also delete the archived rows from warm."""
    from lifecycle.archive_steps import archive_period, finish_interrupted

    t0 = time.perf_counter()
    ds = project.dataset(dataset)
    check_archivable(dataset, ds)
    as_of = as_of or datetime.now(UTC)
    keys = keys or load_keys(need_seal=True)
    report = TransitionReport(TRANSITION, dataset, mode="execute" if execute else "plan")
    own = ledger is None
    ledger = ledger or Ledger(project.ledger_url)
    try:
        with writer_lock(ledger.engine, f"warm.{dataset}"):
            if execute:
                finish_interrupted(project, dataset, ledger)
            for label in sorted(due_periods(project, dataset, as_of)):
                archive_period(project, dataset, ds, period_bounds(label), as_of=as_of, execute=execute,
                               keys=keys, ledger=ledger, operator=operator, report=report,
                               reference_validator=reference_validator)
    finally:
        if own:
            ledger.dispose()
    report.add_time("total", time.perf_counter() - t0)
    return report


def read_only(path: Path) -> None:
    """Verified packages are made read-only (files 0440, folders 0550); S3 uses object lock instead."""
    for root, dirs, files in os.walk(path):
        for f in files:
            os.chmod(os.path.join(root, f), stat.S_IRUSR | stat.S_IRGRP)
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o550)  # noqa: S103 - read-only for owner and group (archivists)
    os.chmod(path, 0o550)  # noqa: S103


def writable(path: Path) -> None:
    os.chmod(path, 0o750)  # noqa: S103 - owner and group only
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o750)  # noqa: S103
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o750)  # noqa: S103
        for f in files:
            os.chmod(os.path.join(root, f), 0o640)


def remove_tree(path: Path) -> None:
    if path.exists():
        writable(path)
        shutil.rmtree(path)


_HOT_TYPES: dict[tuple[str, str], dict[str, str]] = {}


def hot_types(project: Project, ds: Dataset) -> dict[str, str]:
    key = (project.hot_url, ds.table)
    if key not in _HOT_TYPES:
        _HOT_TYPES[key] = _reflect_types(project, ds)
    return _HOT_TYPES[key]


def _reflect_types(project: Project, ds: Dataset) -> dict[str, str]:
    try:
        eng = make_engine(project.hot_url)
        try:
            return {k: str(v) for k, v in reflect(eng, ds.table, ds.schema_ or project.config.hot.schema_)
                    .columns.items()}
        finally:
            eng.dispose()
    except Exception:  # the hot table may be gone; the warm types then describe the columns
        return {}


def disposal_date(ds: Dataset, period: Period) -> date | None:
    rule = ds.retention.cold
    return rule.after.add_to(period.end) if isinstance(rule, Dispose) else None


def _text_options(columns: list[str]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()), strings_can_be_null=True,
                                quoted_strings_can_be_null=False)


def packaged_rows(csv_path: Path, record: pa.Table) -> pa.Array:
    """Which rows of ``record`` (the authentic record as text columns) a package CSV holds already, exactly as
    they are: a boolean mask. The CSV is streamed, so memory stays bounded whatever the package's size; a CSV
    whose header differs (the dataset's columns changed since) holds none of them."""
    import polars as pl

    mine = row_digests(record)
    found = pl.Series("f", [False] * record.num_rows)
    with pacsv.open_csv(csv_path, convert_options=_text_options(record.column_names)) as reader:
        if reader.schema.names != record.column_names:
            return pa.array([False] * record.num_rows)
        for batch in reader:
            found = found | mine.is_in(row_digests(pa.Table.from_batches([batch])).implode())
    return found.to_arrow()


def reconcile(csv_path: Path, columns: list[str]) -> tuple[int, str]:
    """Re-read a package CSV as text (nulls = unquoted empty fields) → (rows, content hash)."""
    t = pacsv.read_csv(csv_path, convert_options=_text_options(columns))
    if t.column_names != columns:
        raise IntegrityError(f"{csv_path.name}: header {t.column_names[:5]}… does not match the declared columns")
    return t.num_rows, content_hash(t)
