"""A warm-up for Great Expectations' runner: the first-use work of a process's first validation, done ahead.

A warm worker's standby child calls :func:`warm_up` before any command arrives (:mod:`lifecycle.standby`).
It imports GX when it is called, not when it is imported.
"""

from __future__ import annotations

import time
from datetime import date

import numpy as np
import pyarrow as pa

from quality.gx import ROW, runner

WARM_UP_TABLE = "dz_warm_up"  # no dataset's: a gate stages ``batch_<dataset>``


def warm_up() -> float:
    """Make the runner and validate a tiny batch with the built-in and datazones expectations the contract suites
    use, in SUMMARY and COMPLETE form: GX's first-use work (its context and DuckDB datasource, expectation and
    metric lookups, query compilation) is then done. A warm worker's standby child calls this before any command
    arrives (:mod:`lifecycle.worker`); seconds taken. Results of later batches are unaffected: the warm-up table
    is dropped and its metric cache and graphs are kept apart from every dataset's (keyed by table)."""
    from quality.defer import import_gx

    import_gx()  # before the first GX import: quality/defer.py
    from great_expectations import expectations as gxe

    import quality.expectations as dz

    t = time.perf_counter()
    r = runner()
    one = pa.array([1, -1, 100], pa.int64())
    batch = pa.table({"k": pa.array([1, 2, 2], pa.int64()), "s": pa.array(["A00", "x", None]), "n": one,
                      "b": one, "t": one, "d": pa.array([date(2020, 1, 1)] * 3),
                      "ts": pa.array([1, 2, 3], pa.timestamp("us", tz="UTC")),
                      ROW: pa.array(np.arange(3, dtype=np.int64))})
    checks = [gxe.ExpectColumnValuesToNotBeNull(column="s"), gxe.ExpectColumnValuesToBeUnique(column="k"),
              gxe.ExpectColumnValuesToBeInTypeList(column="n", type_list=["Integer"]),
              gxe.ExpectColumnValuesToBeInTypeList(column="d", type_list=["Date"]),
              gxe.ExpectColumnValuesToNotBeNull(column="ts"),
              gxe.ExpectColumnValuesToBeBetween(column="n", min_value=0),
              gxe.ExpectColumnValuesToBeInSet(column="s", value_set=["A00"]),
              dz.ExpectNettoToEqualBruttoMinusSkatt(column_list=["n", "b", "t"]),
              dz.ExpectPeriodToBeOrdered(column_A="b", column_B="n"),
              dz.ExpectColumnValuesToBeMultipleOf(column="n", base=100),
              dz.ExpectColumnValuesToBeIcd10SeCode(column="s"), dz.ExpectColumnValuesToBeValidPersonnummer(column="s")]
    for i, c in enumerate(checks):
        c.meta = {"dz": i}
    with r.lock:
        r.stage(WARM_UP_TABLE, batch)
        try:
            r.validate(WARM_UP_TABLE, checks, WARM_UP_TABLE, {"result_format": "SUMMARY",
                                                              "partial_unexpected_count": 0})
            r.validate(WARM_UP_TABLE, checks[:2], WARM_UP_TABLE,
                       {"result_format": "COMPLETE", "unexpected_index_column_names": [ROW],
                        "return_unexpected_index_query": False, "partial_unexpected_count": 3})
        finally:
            r.drop(WARM_UP_TABLE)
            r.forget(WARM_UP_TABLE)
    return time.perf_counter() - t
