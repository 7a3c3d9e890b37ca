"""The Great Expectations gate: the dataset's promote suite, validated batch by batch on DuckDB.

Per batch: stage the Arrow batch in DuckDB (plus a row index), validate the suite with ``SUMMARY`` results (counts
only: ``partial_unexpected_count: 0``), and — only when a quarantine-severity expectation failed — validate those
expectations again with ``COMPLETE`` results keyed by the row index to learn *which* rows failed. Values never
leave this module: results are scrubbed before anything is stored, logged or rendered (Data Docs included).

The rows SQLite could not read as their declared type (``bad_type``) are a contract check outside GX
(``datazones.wrong_type``): they cannot be staged typed, so they go to quarantine with their raw text sealed.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality.gate import CheckResult, GateOutcome, split
from quality.suites import Spec, SuiteSpec, promote_suite
from zones.hot import RAW_COLUMN
from zones.model import Dataset

SUMMARY = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
_KEEP = ("element_count", "unexpected_count", "unexpected_percent", "missing_count", "missing_percent",
         "unexpected_percent_total", "unexpected_percent_nonmissing", "unexpected_index_column_names")
log = logging.getLogger("datazones.quality")
_SAFE_OBSERVED = ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type",
                  "expect_table_row_count_to_equal", "expect_table_row_count_to_be_between",
                  "expect_table_column_count_to_equal", "expect_table_columns_to_match_set")


class GXGate:
    """Gate of one dataset: its promote suite from zones.yaml, run by Great Expectations on DuckDB."""

    def __init__(self, name: str, ds: Dataset, *, suite: SuiteSpec | None = None, today: date | None = None):
        self.name = name
        self.suite = suite or promote_suite(name, ds)
        self.today = today or date.today()
        self.table = f"batch_{name}"
        self.personal = {c for c, col in ds.columns.items() if col.personal_data != "none"}
        self._expectations: list[Any] | None = None
        self._warm: threading.Thread | None = None
        self._project: Any = None
        self._load_error: BaseException | None = None
        self._schema: pa.Schema | None = None

    def prepare(self, project: Any, schema: pa.Schema | None = None) -> None:
        """Start loading GX (~1-3 s) in the background so it overlaps the first extraction. The first check waits
        for it and validates the suite against GX (a ConfigError names file, line and fix) before judging rows.

        ``schema``, the batches' Arrow schema when it is known before the first batch (the hot table's), lets the
        loader also rehearse the suite on an empty batch of it: GX's dependency graphs (fix 7 of
        :mod:`quality.gx`), the staged view's reflection and the queries' compilation are then ready when the
        first rows arrive, instead of being built on the critical path (~0.1 s of a small incremental run)."""
        if self._warm is None:
            self._project = project
            self._schema = schema
            self._warm = threading.Thread(target=self._load, name="dz-gx-load", daemon=True)
            self._warm.start()

    def _load(self) -> None:
        from quality.gx import runner

        try:
            runner()
        except BaseException as exc:  # re-raised by the first check
            self._load_error = exc
            return
        if self._schema is not None:
            try:
                self._rehearse(self._schema)
            except Exception:  # only a head start: the first check builds whatever this could not (and the suite
                log.debug("gate %s: no rehearsal", self.name, exc_info=True)  # check names what is wrong)

    def rehearse(self, schema: pa.Schema) -> None:
        """Validate the suite on an empty batch of ``schema`` now, in this thread: the runner then holds the
        suite's graphs and compiled queries for batches of that schema (a warm worker's standby child does this
        before a command arrives)."""
        self._rehearse(schema)

    def _rehearse(self, schema: pa.Schema) -> None:
        from quality.gx import runner

        r = runner()
        with r.lock:
            if self._expectations is None:
                self._expectations = self._build()
            r.stage(self.table, self._staged(schema.empty_table()))
            try:
                r.validate(self.table, self._expectations, self.suite.name, SUMMARY)
            finally:
                r.drop(self.table)

    @staticmethod
    def _staged(data: pa.Table) -> pa.Table:
        """What is staged for GX: the batch without the raw-text column, plus the row index."""
        from quality.gx import ROW

        staged = data.drop_columns([RAW_COLUMN]) if RAW_COLUMN in data.column_names else data
        return staged.append_column(ROW, pa.array(np.arange(data.num_rows, dtype=np.int64)))

    def ready(self) -> None:
        """Wait for GX and check the suite (idempotent; :meth:`check` calls it too)."""
        if self._warm is not None:
            self._warm.join()
            self._warm = None
            if self._load_error is not None:
                raise self._load_error
        if self._project is not None:
            from quality.suites import check_specs

            check_specs(self._project, [self.name])
            self._project = None

    def _build(self) -> list[Any]:
        from quality.gx import make_expectation

        return [make_expectation(spec, self.today, dz=i, severity=spec.severity, origin=".".join(spec.origin))
                for i, spec in enumerate(self.suite.specs)]

    def check(self, data: pa.Table, *, bad_type: pa.Array, dataset: Dataset) -> GateOutcome:
        from quality.gx import ROW, runner

        self.ready()
        n = data.num_rows
        staged = self._staged(data)
        r = runner()
        with r.lock:
            if self._expectations is None:
                self._expectations = self._build()
            r.stage(self.table, staged)
            try:
                summary = r.validate(self.table, self._expectations, self.suite.name, SUMMARY)
                results = {int(x.expectation_config.meta["dz"]): x for x in summary.results}
                wanted = [i for i, x in results.items() if self.suite.specs[i].severity == "quarantine"
                          and (x.result or {}).get("unexpected_count")]
                rows: dict[int, np.ndarray] = {}
                if wanted:  # every failing row, not GX's first 20 (partial_unexpected_count caps its SQL lists)
                    complete = r.validate(self.table, [self._expectations[i] for i in wanted], self.suite.name,
                                          {"result_format": "COMPLETE", "unexpected_index_column_names": [ROW],
                                           "return_unexpected_index_query": False,
                                           "partial_unexpected_count": max(n, 1)})
                    for x in complete.results:
                        idx = [d[ROW] for d in (x.result or {}).get("unexpected_index_list") or []]
                        rows[int(x.expectation_config.meta["dz"])] = np.asarray(idx, dtype=np.int64)
                    for i in wanted:  # GX's SQL path lists no rows for this one: find them the same way it counts
                        if self.suite.specs[i].type == "expect_compound_columns_to_be_unique" and not len(rows[i]):
                            rows[i] = self._repeated_rows(r.duck, self.suite.specs[i])
            finally:
                r.drop(self.table)
        names = [*staged.column_names, *(c for spec in self.suite.specs for c in spec.columns)]  # kept in messages
        checks, masks = self._checks(results, rows, n, names)
        wrong = pc.fill_null(bad_type, False)
        n_wrong = int(pc.sum(wrong).as_py() or 0)
        checks.append(CheckResult("wrong_type", n_wrong, "quarantine", success=n_wrong == 0,
                                  type="datazones.wrong_type", element_count=n))
        if n_wrong:
            masks.append(("wrong_type", np.asarray(wrong.to_numpy(zero_copy_only=False), dtype=bool)))
        outcome = split(data, masks, checks)
        outcome.suite = self.suite.name
        outcome.result = self._scrub(summary.to_json_dict(), names)
        return outcome

    def _repeated_rows(self, duck: Any, spec: Spec) -> np.ndarray:
        """Row indices of repeated value combinations of ``column_list`` in the staged batch. As in GX's SQL
        count, a combination with a missing value equals nothing (whatever ``ignore_row_if`` says). The count
        check then compares these rows with GX's unexpected count: any difference blocks the batch."""
        from quality.gx import ROW

        cols = [str(c) for c in spec.kwargs["column_list"]]
        quoted = ", ".join(f'"{c}"' for c in cols)
        complete = " AND ".join(f'"{c}" IS NOT NULL' for c in cols)
        found = duck.execute(f'SELECT "{ROW}" FROM (SELECT "{ROW}", count(*) OVER (PARTITION BY {quoted}) AS n '
                             f'FROM "{self.table}" WHERE {complete}) WHERE n > 1').fetchall()
        return np.asarray([row for (row,) in found], dtype=np.int64)

    def _checks(self, results: dict[int, Any], rows: dict[int, np.ndarray], n: int,
                names: list[str]) -> tuple[list[CheckResult], list[tuple[str, np.ndarray]]]:
        checks: list[CheckResult] = []
        masks: list[tuple[str, np.ndarray]] = []
        for i, spec in enumerate(self.suite.specs):
            x = results.get(i)
            res = (x.result or {}) if x is not None else {}
            err = "not evaluated" if x is None else raised(x.exception_info, names)
            success = bool(x.success) if x is not None and err is None else False
            unexpected = res.get("unexpected_count")
            failed = int(unexpected) if unexpected is not None else (0 if success else 1)
            if err is None and i in rows and len(rows[i]) != failed:  # never let an unidentified failing row pass
                err = f"GX identified {len(rows[i])} of the {failed} failing rows"
            blocking = err is not None or (not success and (
                spec.severity == "block" or (spec.severity == "quarantine" and spec.mostly is not None)))
            checks.append(CheckResult(spec.name, failed, spec.severity, success=success, blocking=blocking,
                                      type=spec.type, element_count=res.get("element_count"),
                                      mostly=spec.mostly, error=err))
            if spec.severity == "quarantine" and failed and i in rows:
                m = np.zeros(n, dtype=bool)
                m[rows[i]] = True
                masks.append((spec.name, m))
        return checks, masks

    def _touches_personal(self, spec: Spec) -> bool:
        return bool(set(spec.columns) & self.personal)

    def _scrub(self, result: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """Keep counts, verdicts and configuration; drop every value GX copied from the data. ``result`` is a fresh
        ``to_json_dict()`` of this page's validation: it is scrubbed in place."""
        out = result
        for x in out.get("results", []):
            i = int(x["expectation_config"]["meta"]["dz"])
            spec = self.suite.specs[i]
            res = x.get("result") or {}
            kept = {k: res[k] for k in _KEEP if k in res}
            obs = res.get("observed_value")
            if obs is not None and (spec.type in _SAFE_OBSERVED or (
                    isinstance(obs, int | float) and not isinstance(obs, bool) and not self._touches_personal(spec))):
                kept["observed_value"] = obs
            x["result"] = kept
            message = raised(x.get("exception_info"), names)
            x["exception_info"] = {"raised_exception": message is not None, "exception_message": message,
                                   "exception_traceback": None}
        return out



_QUOTED = re.compile(r"(?<!\w)'[^']*'(?!\w)|(?<!\w)\"[^\"]*\"(?!\w)")  # not an apostrophe in "can't"


def raised(info: dict[str, Any] | None, names: list[str]) -> str | None:
    """The error of one GX result, or None. GX reports an expectation's own exception as ``{raised_exception,
    exception_message, ...}`` but a failed metric as ``{metric id: {raised_exception, ...}}``: both count.

    The message is cut before the SQL, its parameters and any traceback, and every quoted literal that is not one
    of the batch's column names is replaced by ``'…'`` (database errors quote the values they could not read — a
    personnummer must not reach the ledger or a log), as is every run of six or more digits."""
    if not info:
        return None
    if "raised_exception" in info:
        hits = [info] if info.get("raised_exception") else []
    else:
        hits = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    if not hits:
        return None
    text = str(hits[0].get("exception_message") or "error")
    for cut in ("\n[SQL:", "[SQL:", "\n[parameters:", "Traceback", "\n(Background on this error", "\nLINE "):
        text = text.split(cut, 1)[0]
    known = set(names)

    def redact(m: re.Match[str]) -> str:
        q = m.group(0)
        return q if q[1:-1] in known else q[0] + "…" + q[0]

    text = re.sub(r"\d{6,}", "…", _QUOTED.sub(redact, " ".join(text.split())))
    return text[:300] or "error"
