"""One period of one dataset through the archive: build → bag → move → verify → ledger → read-only → warm delete."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import sqlalchemy as sa

from lifecycle import holds as holds_mod
from lifecycle.archive import (
    Period,
    _cutoff_expr,
    authentic_columns,
    content_hash,
    disposal_date,
    hot_types,
    packaged_rows,
    read_only,
    reconcile,
    remove_tree,
)
from lifecycle.eark import ColumnDoc, PackageSpec, PackageWriter, bag, validate_reference
from lifecycle.fixity import locate, verify_package
from lifecycle.ledger import Ledger, packages, utcnow
from lifecycle.promote import fault
from lifecycle.protect import Keys
from lifecycle.report import TransitionReport
from lifecycle.warm import WarmTable
from zones.config import Project
from zones.errors import IntegrityError
from zones.model import Dataset

log = logging.getLogger("datazones.archive")


def _period_filter(ds: Dataset, schema: pa.Schema, period: Period) -> pads.Expression:
    f = pads.field(ds.business_date)
    typ = schema.field(ds.business_date).type
    lo: Any = period.start
    hi: Any = period.end
    if pa.types.is_timestamp(typ):
        tz = UTC if typ.tz else None
        lo = datetime(period.start.year, period.start.month, period.start.day, tzinfo=tz)
        hi = datetime(period.end.year, period.end.month, period.end.day, 23, 59, 59, 999999, tzinfo=tz)
    expr = (f >= pa.scalar(lo, typ)) & (f <= pa.scalar(hi, typ))
    if "_dz_period" in schema.names and ds.archive.period == "year" and ds.partition_by == "year":
        expr = expr & (pads.field("_dz_period") == period.start.year)  # partition pruning
    return expr


def _existing(ledger: Ledger, dataset: str, period: str) -> list[dict[str, Any]]:
    with ledger.engine.connect() as c:
        rows = c.execute(sa.select(packages).where(packages.c.dataset == dataset, packages.c.period == period)
                         .order_by(packages.c.seq)).all()
    return [dict(r._mapping) for r in rows]


def precheck(dataset: str, ds: Dataset, period: str, record: pa.Table, expected_rows: int, ledger: Ledger) -> None:
    """The archive pre-check suite (GX): the restored record holds exactly the selected warm rows (count from an
    independent read of the Delta table), keys present and unique. It blocks on any failure; the content hash is
    then proven after writing (the CSV read back must hash to the hash of these rows)."""
    from quality.gx_gate import GXGate
    from quality.suites import SuiteSpec

    suite = SuiteSpec(f"{dataset}.archive")
    suite.add("expect_table_row_count_to_equal", "block", (), value=expected_rows)
    for k in ds.primary_key:
        suite.add("expect_column_values_to_not_be_null", "block", (), column=k)
    if len(ds.primary_key) == 1:
        suite.add("expect_column_values_to_be_unique", "block", (), column=ds.primary_key[0])
    else:
        suite.add("expect_compound_columns_to_be_unique", "block", (), column_list=list(ds.primary_key))
    outcome = GXGate(f"{dataset}_archive", ds, suite=suite).check(
        record, bad_type=pa.array([False] * record.num_rows, pa.bool_()), dataset=ds)
    ledger.record_gate(f"{dataset}-{period}-archive-precheck", dataset, "archive", outcome)
    if outcome.blocked:
        raise IntegrityError(f"archive pre-check of {dataset} {period} failed: {outcome.blocking_summary()}; "
                             "nothing was packaged")


def archive_period(project: Project, dataset: str, ds: Dataset, period: Period, *, as_of: datetime, execute: bool,
                   keys: Keys, ledger: Ledger, operator: str, report: TransitionReport,
                   reference_validator: bool) -> None:
    warm = WarmTable(project.warm_table_uri(dataset), project.storage_options("warm"))
    dset = warm.dataset()
    due, _ = _cutoff_expr(ds, dset.schema, as_of)
    t = time.perf_counter()
    rows = warm.to_arrow(filter=due & _period_filter(ds, dset.schema, period))
    rows = rows.take(pc.sort_indices(rows, [(k, "ascending") for k in ds.primary_key]))
    report.add_time("read", time.perf_counter() - t)
    if rows.num_rows == 0:
        return
    report.rows_read += rows.num_rows
    t = time.perf_counter()
    record = authentic_columns(dataset, ds, rows, keys)
    digest = content_hash(record)
    report.add_time("restore", time.perf_counter() - t)
    t = time.perf_counter()
    expected = dset.count_rows(filter=due & _period_filter(ds, dset.schema, period))  # an independent count
    precheck(dataset, ds, period.label, record, expected, ledger)
    report.add_time("precheck", time.perf_counter() - t)
    done = [p for p in _existing(ledger, dataset, period.label) if p["status"] in ("verified", "disposed")]
    same = next((p for p in done if p["content_sha256"] == digest), None)
    owners: list[tuple[dict[str, Any], pa.Table]] = [(same, rows)] if same is not None else []
    if same is None:
        # Rows a verified package of the period already holds, exactly as they are (the rows a hold kept in warm
        # after their package was made, for one), are not packaged again: they stay that package's. The CSVs are
        # read (streamed) only when the period's rows are not exactly one package's.
        owned, taken = _owned_masks(done, dataset, record)
        owners = [(pkg, rows.filter(mask)) for pkg, mask in owned]
        if owners:
            report.checks["rows_archived_before"] = (report.checks.get("rows_archived_before", 0)
                                                     + sum(r.num_rows for _, r in owners))
            record, rows = record.filter(pc.invert(taken)), rows.filter(pc.invert(taken))
            digest = content_hash(record)
        if rows.num_rows:
            owners.append((_build(project, dataset, ds, period, record, digest, rows.num_rows, seq=len(done) + 1,
                                  as_of=as_of, ledger=ledger, operator=operator, report=report,
                                  reference_validator=reference_validator), rows))
    for pkg, mine in owners:
        report.batch_ids.append(pkg["package_id"])
        if execute:  # exactly rows this verified package holds: deleting those no hold covers is safe — and
            # needed after a hold is released, when the package is old news
            _delete_from_warm(project, dataset, ds, warm, mine, pkg, keys, ledger, report)


def _csv(pkg: dict[str, Any], dataset: str) -> Path:
    return locate(Path(pkg["path"]))[0] / "representations" / "rep1" / "data" / f"{dataset}.csv"


def _owned_masks(done: list[dict[str, Any]], dataset: str, record: pa.Table
                 ) -> tuple[list[tuple[dict[str, Any], Any]], Any]:
    """For each verified package of the period, the rows of ``record`` it holds that no earlier one does (each
    row has one owner); and the mask of all rows some package holds."""
    out: list[tuple[dict[str, Any], Any]] = []
    taken = pa.array([False] * record.num_rows)
    for pkg in done:
        if pkg["status"] != "verified":
            continue
        csv = _csv(pkg, dataset)
        # The rows it owns leave warm under it: prove the package first (every checksum against its METS, the
        # METS against the ledger) — a package lost or altered would otherwise decide what warm may delete
        result = verify_package(Path(pkg["path"]), expected_mets_sha256=pkg["mets_sha256"])
        if not result.ok or not csv.is_file():
            why = "; ".join(f"{p.path}: {p.problem}" for p in result.problems[:5]) or f"{csv} is missing"
            raise IntegrityError(f"package {pkg['package_id']} is verified in the ledger but fails verification "
                                 f"now ({why}). Its period's rows in warm are left as they are: restore the "
                                 f"package from a copy (`zones verify {pkg['package_id']}` lists what is wrong) "
                                 "and rerun.")
        hit = pc.and_not(packaged_rows(csv, record), taken)
        if pc.any(hit).as_py():
            out.append((pkg, hit))
            taken = pc.or_(taken, hit)
    return out, taken


def finish_interrupted(project: Project, dataset: str, ledger: Ledger) -> None:
    """Complete what a crash cut short for the dataset's verified packages: making a package read-only (the
    step after its ledger entry), and recording every warm delete that Delta committed but the ledger never heard
    of (its rows are gone, so the period is no longer due and nothing later would record it) — the first delete
    of a package or a later one (rows a hold kept, deleted once it was released)."""
    warm = WarmTable(project.warm_table_uri(dataset), project.storage_options("warm"))
    with ledger.engine.connect() as c:
        rows = c.execute(sa.select(packages).where(packages.c.dataset == dataset)).all()
    open_pkgs = []
    for p in (dict(r._mapping) for r in rows):
        if p["status"] != "verified":
            continue
        if Path(p["path"]).exists():
            read_only(Path(p["path"]))
        if p["warm_deleted_at"] is None or (p["rows_deleted"] or 0) < p["rows"]:
            open_pkgs.append(p)
    if not open_pkgs or not warm.exists():
        return
    recorded: dict[str, int] = {}  # deletes that removed rows, per package, as the ledger has them
    for e in ledger.events(dataset=dataset, kind="archive.warm_deleted"):
        if int(e["payload"].get("rows_deleted") or 0) > 0:
            recorded[e["batch_id"]] = recorded.get(e["batch_id"], 0) + 1
    history = warm.history()
    for p in open_pkgs:
        commits = sorted((h for h in history if h.get("datazones.package_id") == p["package_id"]
                          and _deleted(h) > 0), key=lambda h: int(h.get("version") or 0))
        for commit in commits[recorded.get(p["package_id"], 0):]:
            deleted = _deleted(commit)
            with ledger.engine.begin() as c:
                c.execute(packages.update().where(packages.c.package_id == p["package_id"]).values(
                    warm_deleted_at=utcnow(), rows_deleted=sa.func.coalesce(packages.c.rows_deleted, 0) + deleted))
                ledger.append("archive.warm_deleted", dataset=dataset, batch_id=p["package_id"], conn=c,
                              rows_deleted=deleted, recovered=True, delta_version=commit.get("version"))


def _deleted(commit: dict[str, Any]) -> int:
    return int((commit.get("operationMetrics") or {}).get("num_target_rows_deleted", 0) or 0)


def _build(project: Project, dataset: str, ds: Dataset, period: Period, record: pa.Table, digest: str, n: int, *,
           seq: int, as_of: datetime, ledger: Ledger, operator: str, report: TransitionReport,
           reference_validator: bool) -> dict[str, Any]:
    cold = Path(project.zone_uri("cold"))
    objid = f"datazones-{dataset}-{period.label}-{seq:04d}"
    staging = cold / ".staging"
    final_dir = cold / dataset
    final = final_dir / f"{objid}.bag"
    for leftover in (staging / objid, staging / f"{objid}.bag", staging / f".{objid}.bag.partial", final):
        remove_tree(leftover)  # not verified in the ledger: unfinished work from a crash, built again
    staging.mkdir(parents=True, exist_ok=True)
    final_dir.mkdir(parents=True, exist_ok=True)
    types = hot_types(project, ds)
    docs = tuple(_column_doc(ds, c, types.get(c, "string")) for c in record.column_names)
    agency = project.config.agency
    rule = ds.retention.cold
    spec = PackageSpec(
        objid=objid, dataset=dataset, title=f"{dataset} {period.label}", description=ds.description or dataset,
        owner=ds.owner, steward=ds.steward, domain=ds.domain or dataset, period_label=period.label,
        period_start=period.start, period_end=period.end, rows=n,
        agency_name=agency.name if agency else "unknown", agency_id=agency.org_id if agency else None,
        cold_action=rule.action, basis=rule.basis, dispose_after=disposal_date(ds, period),
        secrecy_until=ds.archive.secrecy.add_to(period.end), columns=docs, content_sha256=digest,
        created=as_of, operator=operator, primary_key=tuple(ds.primary_key))
    t = time.perf_counter()
    writer = PackageWriter(staging, spec, overwrite=True)
    with writer.data_file(f"{dataset}.csv", rows=n) as fh:
        pacsv.write_csv(record, fh, pacsv.WriteOptions(include_header=True, quoting_style="all_valid", eol="\r\n"))
    info = writer.finish()
    fault("archive_after_build")
    bagged = bag(info.path, info={"Source-Organization": spec.agency_name, "External-Description": spec.title})
    bagged.rename(final)
    fault("archive_after_move")
    report.add_time("write", time.perf_counter() - t)
    t = time.perf_counter()
    result = verify_package(final, expected_mets_sha256=info.mets_sha256)
    if not result.ok:
        raise IntegrityError(f"package {objid} failed verification after writing: "
                             + "; ".join(f"{p.path}: {p.problem}" for p in result.problems[:5]))
    pkg_dir = result.package
    rows_back, digest_back = reconcile(pkg_dir / "representations" / "rep1" / "data" / f"{dataset}.csv",
                                       record.column_names)
    if (rows_back, digest_back) != (n, digest):
        raise IntegrityError(f"package {objid}: the CSV read back holds {rows_back} rows with content hash "
                             f"{digest_back[:12]}…, the warm rows were {n} with {digest[:12]}…")
    validator = validate_reference(pkg_dir) if reference_validator else None
    if validator is not None and validator.available and not validator.valid:
        raise IntegrityError(f"package {objid} is not a valid E-ARK SIP: {'; '.join(validator.errors[:5])}")
    report.add_time("verify", time.perf_counter() - t)
    size = sum(s for s, _ in result.files.values())
    row = {"package_id": objid, "dataset": dataset, "period": period.label, "seq": seq, "rows": n, "bytes": size,
           "content_sha256": digest, "mets_sha256": info.mets_sha256, "path": str(final), "status": "verified",
           "created_at": as_of, "verified_at": utcnow(), "warm_deleted_at": None, "rows_deleted": None,
           "cold_action": rule.action, "dispose_after": spec.dispose_after, "basis": rule.basis,
           "secrecy_until": spec.secrecy_until, "last_audit_at": utcnow(), "last_audit_ok": True}
    with ledger.engine.begin() as c:
        c.execute(packages.insert().values(**row))
        ledger.append("archive.verified", dataset=dataset, batch_id=objid, conn=c, rows=n, bytes=size,
                      content_sha256=digest, mets_sha256=info.mets_sha256, tag_files=result.tag_files,
                      period=period.label,
                      validator=("valid" if validator and validator.valid else
                                 "unavailable" if not validator or not validator.available else "invalid"))
    fault("archive_after_verified")
    read_only(final)
    report.rows_written += n
    report.bytes_written += size
    report.batches += 1
    return row


def _delete_from_warm(project: Project, dataset: str, ds: Dataset, warm: WarmTable, rows: pa.Table,
                      pkg: dict[str, Any], keys: Keys, ledger: Ledger, report: TransitionReport) -> None:
    """Delete exactly the archived row versions (key + watermark), minus every row a hold covers."""
    hold_list = holds_mod.active(ledger, dataset)
    held = holds_mod.held_mask(project, dataset, rows, hold_list,
                               person_keys=holds_mod.resolve_people(project, hold_list, keys, zone="warm"))
    source = rows.filter(pc.invert(held)).select([*ds.primary_key, ds.watermark])
    n_held = rows.num_rows - source.num_rows
    t = time.perf_counter()
    deleted = warm.delete_versions(source, app_id=f"datazones/archive/{dataset}",
                                   meta={"datazones.package_id": pkg["package_id"]})
    fault("archive_after_warm_delete")
    if deleted == 0 and pkg["warm_deleted_at"] is not None:  # a rerun while a hold lasts: nothing new to record
        report.checks["rows_held"] = report.checks.get("rows_held", 0) + n_held
        return
    with ledger.engine.begin() as c:
        c.execute(packages.update().where(packages.c.package_id == pkg["package_id"]).values(
            warm_deleted_at=utcnow(), rows_deleted=sa.func.coalesce(packages.c.rows_deleted, 0) + deleted))
        ledger.append("archive.warm_deleted", dataset=dataset, batch_id=pkg["package_id"], conn=c,
                      rows_deleted=deleted, rows_held=n_held, holds=[h.hold_id for h in hold_list])
    report.rows_deleted += deleted
    report.checks["rows_held"] = report.checks.get("rows_held", 0) + n_held
    report.add_time("delete", time.perf_counter() - t)



def _column_doc(ds: Dataset, name: str, typ: str) -> ColumnDoc:
    """A column as the package describes it: required when the contract never lets it be empty (key, watermark,
    business date, ``nullable: false`` with a blocking check), and the contract's checks with their severity."""
    c = ds.columns.get(name)
    if c is None:
        return ColumnDoc(name=name, type=typ, nullable=True, description="undeclared column",
                         personal_data="unclassified")
    severity = c.severity or ds.quality.severity
    always = name in ds.primary_key or name in (ds.watermark, ds.business_date)
    checks = {k: v for k, v in (("values", c.values), ("minimum", c.min_), ("maximum", c.max_),
                                ("pattern", c.regex), ("format", c.format), ("multipleOf", c.multiple_of),
                                ("notNull", True if not c.nullable and not always else None),
                                ("unique", True if c.unique and name not in ds.primary_key else None))
              if v is not None}
    if checks:
        checks["severity"] = severity
    return ColumnDoc(name=name, type=typ, nullable=not (always or (not c.nullable and severity == "block")),
                     description=c.description or "", personal_data=c.personal_data,
                     checks=tuple((k, v) for k, v in checks.items()))
