"""Promote hot → warm: incremental by watermark, exactly once, crash-safe.

Order of one batch (a keyset page of at most ``batch_rows`` rows):

1. extract the page from hot (rows with ``watermark <= hi`` and, incrementally, ``> lo``; ``lo`` is the stored
   watermark minus ``lookback``; ``hi`` is the run's as-of time minus ``settle_lag``);
2. gate it (contract; the GX gate plugs in here) → rejected rows;
3. ledger: ``batch started`` with the page's cursor, ``hi`` and whether it is the last page;
4. quarantine the rejected rows (sealed, with reason and batch id);
5. transform (pseudonymise, seal, generalise, drop) and commit to Delta with app transaction ``(app_id, seq)``
   — only if Delta does not already hold ``seq`` (checked under the table's writer lock);
6. ledger: ``batch committed`` and, for the last page, the new watermark — in one ledger transaction.

A crash anywhere is repaired by the next run before it plans: an open ledger batch whose Delta transaction exists
is completed from its recorded cursor; one without is abandoned and its quarantine rows removed. A full load
appends (pages are disjoint key ranges of one as-of); incremental runs MERGE by primary key, a row replaced only
by a newer watermark, so re-reading the lookback window never duplicates anything.

**Late rows.** A row whose transaction commits after the run is still caught if its watermark is within
``settle_lag`` of the run (it is not read until it has settled) or within ``lookback`` of the stored watermark (it
is re-read next time). Transactions open longer than ``settle_lag + lookback`` need a larger window.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from lifecycle.ledger import Ledger
from lifecycle.locks import Held, writer_lock
from lifecycle.protect import Keys, load_keys
from lifecycle.quarantine import quarantine_app_id, quarantine_rows, remove_batch
from lifecycle.report import TransitionReport
from lifecycle.transform import (
    comparable_columns,
    constant,
    crypto_columns,
    dense_columns,
    needs_seal_key,
    plan_columns,
    stale_keys,
    to_warm,
)
from lifecycle.warm import WarmTable
from quality.gate import Gate, GateOutcome
from zones.config import Project
from zones.errors import TerminalError
from zones.hot import HotReader, Page, clock, make_engine, reflect

log = logging.getLogger("datazones.promote")
TRANSITION = "promote"
FAULT_POINTS = ("after_extract", "after_batch_start", "after_quarantine", "after_delta_commit",
                "after_ledger_commit", "after_last_page")
_hits: dict[str, int] = {}
CLOCK_SLACK = timedelta(seconds=2)  # the hot store's clock may count whole seconds (SQLite)


def fault(point: str) -> None:
    """Fault injection for tests: ``DATAZONES_FAULT=point[:n]`` kills the process (os._exit) at the n-th hit."""
    spec = os.environ.get("DATAZONES_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name == point:
        _hits[point] = _hits.get(point, 0) + 1
        if _hits[point] >= int(nth or 1):
            os._exit(137)


class GateBlocked(TerminalError):
    """A block-severity check failed: the batch was not committed (Delta unchanged, the ledger says why)."""


def default_gate(dataset: str, ds: Any) -> Gate:
    """The Great Expectations gate with the dataset's promote suite (GX is imported on first use)."""
    from quality.gx_gate import GXGate

    return GXGate(dataset, ds)


def rehearse(project: Project, names: list[str]) -> None:
    """Rehearse each dataset's gate on an empty batch of its hot table's schema, so that this process's GX runner
    already holds the suites' graphs and compiled queries when rows come. A warm worker's standby child does this
    for the datasets of the last promotion it saw, before the next command arrives; nothing is read or written."""
    for name in names:
        ds = project.dataset(name)
        engine = make_engine(project.hot_url)
        try:
            hot = reflect(engine, ds.table, ds.schema_ or project.config.hot.schema_)
        finally:
            engine.dispose()
        gate = default_gate(name, ds)
        run = getattr(gate, "rehearse", None)
        if run is not None:
            run(hot.arrow_schema)


def gx_in_memory() -> bool:
    """Great Expectations is imported already (a warm worker, a preloaded Airflow worker, an earlier run)."""
    return "great_expectations" in sys.modules


def _prepare(gate: Gate, project: Project, schema: pa.Schema) -> None:
    """Call the gate's optional ``prepare``: with the batches' schema where it takes one (``schema=``), else as
    ``prepare(project)`` (gates written before the schema was offered)."""
    prepare = getattr(gate, "prepare", None)
    if prepare is None:
        return
    try:
        params = list(inspect.signature(prepare).parameters.values())
    except (TypeError, ValueError):  # a callable without a signature: the protocol's first form
        params = []
    if any(p.name == "schema" or p.kind is p.VAR_KEYWORD for p in params):
        prepare(project, schema=schema)
    else:
        prepare(project)


def _bounded_as_of(as_of: str | datetime | None, hot_now: datetime) -> datetime:
    """The run's as-of time, never past the hot store's clock: the watermark would pass rows that are yet to be
    written (and ``settle_lag``/``lookback`` would not bring them back once the skew exceeds them). By default the
    earlier of this host's clock and the hot store's; a later explicit time is refused."""
    if as_of is None:
        return min(datetime.now(UTC), hot_now)
    t = _ts(as_of)
    if t > hot_now + CLOCK_SLACK:
        raise TerminalError(f"as-of {t.isoformat()} is later than the hot store's clock ({hot_now.isoformat()}): "
                            "rows written between the two would be skipped for good. Give a time at or before "
                            "the hot store's, or leave --as-of out (it defaults to now)")
    return t


def _adopt(ledger: Ledger, warm: WarmTable, qwarm: WarmTable, dataset: str) -> bool:
    """Delta holds batches past the ledger's last one: the ledger was lost, restored from an older copy, or is
    another database. Batch numbers must not restart below Delta's (the exactly-once check would skip every new
    batch as "already written"), so the ledger records an ``adopted`` batch at Delta's last number and the run
    goes on after it — re-merging from the ledger's watermark (a lost ledger has none: every hot row is merged
    again, latest version wins, nothing doubles)."""
    known = ledger.next_seq(dataset, TRANSITION) - 1
    floor = warm.committed(app_id(dataset))
    if floor <= known and known == 0:  # the quarantine table is opened only when the ledger knows nothing
        floor = max(floor, qwarm.committed(quarantine_app_id(dataset)))
    if floor <= known:
        return False
    log.warning("the ledger knows promote batches of %s up to #%s, Delta up to #%s: the ledger was lost or is "
                "older than warm; continuing after Delta's and re-merging from the ledger's watermark (%s)",
                dataset, known, floor, ledger.watermark(dataset) or "none: every row")
    ledger.adopt_batch(batch_id=f"{dataset}-{floor:08d}-adopted", dataset=dataset, transition=TRANSITION, seq=floor,
                       detail={"adopted": True, "ledger_knew": known})
    return True


def app_id(dataset: str) -> str:
    return f"datazones/promote/{dataset}"


def _ts(v: str | datetime) -> datetime:
    d = datetime.fromisoformat(v) if isinstance(v, str) else v
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _cursor(v: Any) -> tuple[Any, ...] | None:
    return tuple(v) if v is not None else None


def _recover(ledger: Ledger, warm: WarmTable, qwarm: WarmTable, dataset: str, report: TransitionReport) -> None:
    done = warm.committed(app_id(dataset))
    for b in ledger.open_batches(dataset, TRANSITION):
        detail = json.loads(b["detail"] or "{}")
        if done >= b["seq"]:
            ledger.finish_batch(b["batch_id"], status="committed", dataset=dataset, transition=TRANSITION,
                                watermark=detail.get("hi") if detail.get("final") else None,
                                advance_watermark=bool(detail.get("final")), rows_read=detail.get("rows_read"),
                                rows_written=detail.get("rows_written"),
                                rows_quarantined=detail.get("rows_quarantined"))
            log.warning("recovered batch %s: Delta had committed it, ledger completed", b["batch_id"])
        else:
            remove_batch(qwarm, dataset, b["batch_id"], seq=b["seq"])
            ledger.finish_batch(b["batch_id"], status="abandoned", dataset=dataset, transition=TRANSITION)
            log.warning("abandoned batch %s: never reached Delta; it will be re-read", b["batch_id"])
        report.recovered_batches += 1


def promote(project: Project, dataset: str, *, as_of: datetime | None = None, keys: Keys | None = None,
            ledger: Ledger | None = None, gate: Gate | None = None, batch_rows: int | None = None,
            progress: Callable[[int], None] | None = None, wait_for_lock: bool = False,
            rebuild: bool = False) -> TransitionReport:
    """Promote one dataset from hot to warm as of ``as_of`` (default: now). Returns a TransitionReport.
    ``rebuild`` reloads a warm table that went missing from hot (refused without it: module docstring)."""
    t_start = time.perf_counter()
    ds = project.dataset(dataset)
    report = TransitionReport(TRANSITION, dataset)
    engine = make_engine(project.hot_url)
    hot = reflect(engine, ds.table, ds.schema_ or project.config.hot.schema_)
    plans = plan_columns(dataset, ds, hot, file=str(project.file))
    keys = keys or load_keys(need_seal=needs_seal_key(plans))
    report.key_id = keys.pseudonym_key_id
    own_ledger = ledger is None
    ledger = ledger or Ledger(project.ledger_url)
    warm = WarmTable(project.warm_table_uri(dataset), project.storage_options("warm"),
                     opaque_columns=crypto_columns(plans), dense_columns=dense_columns(ds))
    qwarm = WarmTable(project.quarantine_uri(dataset), project.storage_options("warm"))
    gate = gate or default_gate(dataset, ds)
    reader = HotReader(engine, hot, key=list(ds.primary_key), watermark=ds.watermark)
    limit = batch_rows or project.batch_rows(ds)
    explicit = as_of is not None  # an explicit as-of before the last run is a no-op; "now" before it is wrong
    as_of = _bounded_as_of(as_of, clock(engine))
    defaults = project.config.defaults
    try:
        with writer_lock(ledger.engine, f"warm.{dataset}", wait=wait_for_lock) as held:
            _recover(ledger, warm, qwarm, dataset, report)
            adopted = _adopt(ledger, warm, qwarm, dataset)
            wm = ledger.watermark(dataset)
            if wm is not None and not warm.exists():
                if not rebuild:
                    raise TerminalError(
                        f"warm table {dataset} is missing at {project.warm_table_uri(dataset)}, but the ledger "
                        f"says it was promoted up to {wm}: it was deleted or moved, or warm points elsewhere. "
                        "Nothing was written (an incremental run would bring back only the last changes). Restore "
                        f"the table or fix warm's path; or reload it from hot with `zones promote {dataset} "
                        "--rebuild` — rows already archived or purged from hot are not in hot any more")
                ledger.reset_watermark(dataset, reason="rebuild: the warm table was missing")
                log.warning("rebuilding warm %s from hot: the table was missing (watermark was %s)", dataset, wm)
                wm = None
            if wm is not None and not explicit and _ts(wm) > as_of + CLOCK_SLACK:
                raise TerminalError(
                    f"the stored watermark of {dataset} ({wm}) is later than this run's as-of ({as_of.isoformat()}, "
                    "bounded by the hot store's clock): every run would find nothing to do. It was set by a run "
                    "with a later --as-of on a skewed clock, or edited; `zones ledger verify` tells which. Nothing "
                    "was written")
            cursor: tuple[Any, ...] | None = None
            if wm is None:
                last = ledger.last_batch(dataset, TRANSITION, status="committed")
                resume = None
                if last:
                    d = json.loads(last["detail"] or "{}")
                    # resume an unfinished full load only where it stopped: never after an adoption (the
                    # ledger's last page is older than Delta's) nor into a warm table that went missing (its
                    # committed version is 0). So --rebuild needs no check here: it resumes like any run.
                    if d.get("mode") == "full" and not d.get("final") and not adopted \
                            and warm.committed(app_id(dataset)) == last["seq"]:
                        resume = d
                if resume:
                    hi, cursor, mode = _ts(resume["hi"]), _cursor(resume["cursor"]), "full"
                else:
                    hi = defaults.settle_lag.subtract_from(as_of)
                    mode = "full" if warm.count() == 0 else "full-merge"
                lo = None
            else:
                mode = "incremental"
                lo = defaults.lookback.subtract_from(_ts(wm))
                hi = max(defaults.settle_lag.subtract_from(as_of), _ts(wm))
                if hi <= _ts(wm):
                    report.mode = "noop"
                    report.watermark_from = report.watermark_to = wm
                    return report
            report.mode = mode
            report.watermark_from = wm
            # GX loads while the first page is extracted. An incremental run loads it only if the window holds
            # rows (most scheduled runs find none; a one-row probe tells), unless it is in memory already (a warm
            # worker): then the head start is cheap and takes the gate's set-up off the critical path.
            early = hasattr(gate, "prepare") and (mode != "incremental" or gx_in_memory()
                                                  or reader.any_rows(hi=hi, lo=lo))
            if early:
                _prepare(gate, project, hot.arrow_schema)
            _run(project, dataset, ds, plans, keys, ledger, warm, qwarm, gate, reader, limit, mode, lo, hi,
                 cursor, report, progress, prepared=early, held=held)
    finally:
        reader.close()
        engine.dispose()
        if own_ledger:
            ledger.dispose()
    report.delta_version = warm.version()
    report.add_time("total", time.perf_counter() - t_start)
    log.info("promote %s: %s read, %s written, %s quarantined, delta v%s", dataset, report.rows_read,
             report.rows_written, report.rows_quarantined, report.delta_version)
    return report


def _run(project: Project, dataset: str, ds: Any, plans: Any, keys: Keys, ledger: Ledger, warm: WarmTable,
         qwarm: WarmTable, gate: Gate, reader: HotReader, limit: int, mode: str, lo: datetime | None,
         hi: datetime, cursor: tuple[Any, ...] | None, report: TransitionReport,
         progress: Callable[[int], None] | None, *, prepared: bool, held: Held) -> None:
    """Three stages overlap: extract page k+1 ‖ gate + transform page k ‖ commit page k-1 (in seq order)."""
    committer = ThreadPoolExecutor(1, thread_name_prefix="dz-commit")
    pages: queue.Queue[tuple[Page | BaseException | None, float]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            t = time.perf_counter()
            for page in reader.pages(hi=hi, lo=lo, after=cursor, limit=limit):
                pages.put((page, time.perf_counter() - t))
                if stop.is_set():
                    return
                t = time.perf_counter()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            pages.put((exc, 0.0))

    extractor = threading.Thread(target=produce, name="dz-extract", daemon=True)

    def commit(rows: pa.Table | None, seq: int, batch_id: str, n: int, rejected: int, final: bool,
               stale: pa.Table | None) -> None:
        held.verify()  # never write to Delta, or finish a batch, without the lock
        if rows is not None:
            t = time.perf_counter()
            changed = _commit(warm, rows, ds, partition, mode, dataset, seq, batch_id, keys, report, compare, stale)
            report.rows_unchanged += rows.num_rows - changed
            report.add_time("write", time.perf_counter() - t)
            fault("after_delta_commit")
        t = time.perf_counter()
        ledger.finish_batch(batch_id, status="committed", dataset=dataset, transition=TRANSITION,
                            watermark=hi.isoformat() if final else None, advance_watermark=final,
                            rows_read=n, rows_written=n - rejected, rows_quarantined=rejected,
                            delta_version=warm.version())
        report.add_time("ledger", time.perf_counter() - t)
        fault("after_ledger_commit")
        report.rows_read += n
        report.rows_written += n - rejected
        report.rows_quarantined += rejected
        report.batches += 1
        report.batch_ids.append(batch_id)
        if progress:
            progress(n)

    pending: Future[None] | None = None
    partition = ["_dz_period"] if ds.partition_by != "none" else None
    compare = comparable_columns(plans, ds)
    ready: Callable[[], None] | None = getattr(gate, "ready", None)
    extractor.start()
    try:
        while True:
            item, t_extract = pages.get()
            if isinstance(item, BaseException):
                raise item
            assert item is not None
            page = item
            report.add_time("extract", t_extract)
            final = page.data.num_rows < limit
            fault("after_extract")
            n = page.data.num_rows
            if n == 0 and mode == "incremental":  # nothing changed: nothing to judge, and no GX to load (~1.5 s)
                outcome = GateOutcome(page.data, page.data, pa.array([], pa.string()),
                                      suite=str(getattr(getattr(gate, "suite", None), "name", "contract")))
            else:
                if ready is not None:  # the one-off GX load and suite check, timed apart from validation
                    t = time.perf_counter()
                    if not prepared:  # loaded only now: most scheduled incremental runs find no rows
                        _prepare(gate, project, reader.table.arrow_schema)
                    ready()
                    report.add_time("gate_load", time.perf_counter() - t)
                    ready = None
                t = time.perf_counter()
                outcome = gate.check(page.data, bad_type=page.bad_type, dataset=ds)
                report.add_time("gate", time.perf_counter() - t)
            for c in outcome.checks:
                report.checks[c.name] = report.checks.get(c.name, 0) + c.failed
                if c.failed and c.severity == "warn" and c.name not in report.warnings:
                    report.warnings.append(c.name)
            if outcome.blocked:
                if pending is not None:
                    pending.result()
                _block(ledger, dataset, outcome, lo, keys, mode, hi, page.last_key or cursor, report)
            rejected = outcome.rejected.num_rows
            t = time.perf_counter()
            rows = stale = None
            if outcome.passed.num_rows:
                rows = to_warm(dataset, ds, plans, outcome.passed, keys, "")
                if mode != "full":  # MERGE: a person promoted under a retired pseudonym key moves to the new one
                    stale = stale_keys(ds, plans, outcome.passed, keys)
            report.add_time("transform", time.perf_counter() - t)
            if pending is not None:  # the previous page's commit must land before this batch is opened
                pending.result()
            seq = ledger.next_seq(dataset, TRANSITION)
            batch_id = f"{dataset}-{seq:08d}"
            if rows is not None:
                rows = rows.set_column(rows.schema.get_field_index("_dz_batch"), "_dz_batch",
                                       constant(batch_id, rows.num_rows))
            detail = {"mode": mode, "hi": hi.isoformat(), "cursor": page.last_key or cursor, "final": final,
                      "rows_read": n, "rows_written": n - rejected, "rows_quarantined": rejected}
            ledger.start_batch(batch_id=batch_id, dataset=dataset, transition=TRANSITION, seq=seq,
                               wm_from=lo.isoformat() if lo else None, key_id=keys.pseudonym_key_id,
                               detail=detail, gate=outcome)
            fault("after_batch_start")
            if rejected:
                quarantine_rows(qwarm, dataset, ds, plans, outcome.rejected, outcome.reasons, keys, batch_id, seq)
                fault("after_quarantine")
            report.bytes_read += page.data.nbytes
            pending = committer.submit(commit, rows, seq, batch_id, n, rejected, final, stale)
            if page.last_key is not None:
                cursor = page.last_key
            if final:
                pending.result()
                report.watermark_to = hi.isoformat()
                fault("after_last_page")
                return
    finally:
        stop.set()
        while extractor.is_alive():  # unblock a producer waiting on the full queue, then let it finish
            try:
                pages.get(timeout=0.05)
            except queue.Empty:
                pass
        committer.shutdown(wait=True, cancel_futures=True)


def _block(ledger: Ledger, dataset: str, outcome: GateOutcome, lo: datetime | None, keys: Keys, mode: str,
           hi: datetime, cursor: Any, report: TransitionReport) -> None:
    """Record a blocked batch (its gate run and the failed checks) and stop the run: nothing reaches Delta."""
    seq = ledger.next_seq(dataset, TRANSITION)
    batch_id = f"{dataset}-{seq:08d}"
    n = outcome.passed.num_rows + outcome.rejected.num_rows
    ledger.start_batch(batch_id=batch_id, dataset=dataset, transition=TRANSITION, seq=seq,
                       wm_from=lo.isoformat() if lo else None, key_id=keys.pseudonym_key_id,
                       detail={"mode": mode, "hi": hi.isoformat(), "cursor": cursor, "final": False,
                               "rows_read": n, "blocked": True}, gate=outcome)
    ledger.finish_batch(batch_id, status="blocked", dataset=dataset, transition=TRANSITION, rows_read=n,
                        rows_written=0, rows_quarantined=0)
    report.blocked = outcome.blocking_summary()
    raise GateBlocked(f"quality gate blocked batch {batch_id} of {dataset} ({n} rows; suite {outcome.suite}): "
                      f"{report.blocked}. Nothing was committed; warm is unchanged. Fix the source (or the "
                      f"expectation in zones.yaml) and rerun; `zones quality results {dataset}` shows the run.")


def _commit(warm: WarmTable, rows: pa.Table, ds: Any, partition: list[str] | None, mode: str, dataset: str,
            seq: int, batch_id: str, keys: Keys, report: TransitionReport, compare: list[str],
            stale: pa.Table | None = None) -> int:
    """Write one batch to Delta exactly once; returns how many rows changed warm (inserted or replaced)."""
    aid = app_id(dataset)
    if warm.committed(aid) >= seq:  # Delta records app transactions but does not enforce them: we do.
        log.warning("batch %s already in Delta (txn %s); not writing it again", batch_id, seq)
        return 0
    new_cols = warm.check_schema(rows.schema)
    if new_cols:
        current = warm.schema()
        assert current is not None
        added = [n for n in rows.schema.names if n not in current.names]
        report.new_columns.extend(added)
        undeclared = [n for n in added if n not in ds.columns]
        if undeclared:
            report.warnings.append(f"undeclared hot column(s) {', '.join(undeclared)} added to warm as they are "
                                   f"(on_new_column: add): declare their personal-data class in zones.yaml")
    before = warm.file_sizes()
    meta = {"datazones.batch_id": batch_id, "datazones.seq": str(seq), "datazones.key_id": keys.pseudonym_key_id,
            "datazones.transition": TRANSITION}
    if mode == "full" or not warm.exists():
        warm.append(rows, partition_by=partition, app_id=aid, seq=seq, meta=meta, merge_schema=new_cols)
        changed = rows.num_rows
    else:
        m = warm.merge(rows, keys=list(ds.primary_key), newer=ds.watermark, app_id=aid, seq=seq, meta=meta,
                       merge_schema=new_cols, compare=compare, stale=stale)
        changed = int(m.get("num_target_rows_inserted", 0)) + int(m.get("num_target_rows_updated", 0))
    report.bytes_written += sum(v for k, v in warm.file_sizes().items() if k not in before)
    return changed
