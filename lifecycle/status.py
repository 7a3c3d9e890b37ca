"""What `zones status` and the demo query show."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from lifecycle.ledger import Ledger
from lifecycle.warm import WarmTable
from zones.config import Project
from zones.hot import make_engine


def open_quarantined(project: Project, dataset: str) -> int:
    """Rows in the dataset's quarantine now, not released. (The ledger's per-batch counts are what each run's gate
    rejected: a row re-read in the lookback window is rejected again by every run but held once.)"""
    import pyarrow.compute as pc

    q = WarmTable(project.quarantine_uri(dataset), project.storage_options("warm"))
    if not q.exists():
        return 0
    released = q.to_arrow(columns=["_dz_released"]).column("_dz_released")
    return int(pc.sum(pc.invert(pc.fill_null(released, False))).as_py() or 0)


def dataset_status(project: Project) -> list[dict[str, Any]]:
    ledger = Ledger(project.ledger_url)
    engine = make_engine(project.hot_url)
    rows = []
    try:
        insp = sa.inspect(engine)
        for name, ds in project.config.datasets.items():
            schema = ds.schema_ or project.config.hot.schema_
            hot_rows = None
            if insp.has_table(ds.table, schema=schema):
                t = sa.Table(ds.table, sa.MetaData(), schema=schema)
                with engine.connect() as c:
                    hot_rows = int(c.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)
            last = ledger.last_batch(name)
            rows.append({
                "dataset": name, "hot_rows": hot_rows,
                "warm_rows": WarmTable(project.warm_table_uri(name), project.storage_options("warm")).count(),
                "quarantined": open_quarantined(project, name), "watermark": ledger.watermark(name),
                "last_run": last["finished_at"].isoformat(timespec="seconds") if last and last["finished_at"]
                else None, "last_status": last["status"] if last else None,
            })
    finally:
        engine.dispose()
        ledger.dispose()
    return rows


def duckdb_demo_query(project: Project) -> tuple[str, pa.Table]:
    """Payments per year and benefit from warm, read by DuckDB through deltalake's Arrow dataset.

    (With network access DuckDB's own ``delta`` extension reads the same tables: ``delta_scan('<path>')``.)
    """
    import duckdb
    from deltalake import DeltaTable

    opts = project.storage_options("warm")

    def table(name: str, cols: list[str]) -> pa.Table:
        return pa.table(DeltaTable(project.warm_table_uri(name), storage_options=opts).to_pyarrow_table(columns=cols))

    utb = table("utbetalning", ["utbetald", "beslut_id", "individ_id", "netto_sek", "status"])  # noqa: F841
    bes = table("beslut", ["beslut_id", "arende_id"])  # noqa: F841
    are = table("arende", ["arende_id", "forman"])  # noqa: F841
    sql = ("SELECT year(u.utbetald) AS ar, a.forman, count(*) AS utbetalningar,\n"
           "       count(DISTINCT u.individ_id) AS personer, sum(u.netto_sek) AS netto_sek\n"
           "FROM utb u JOIN bes b USING (beslut_id) JOIN are a USING (arende_id)\n"
           "WHERE u.status = 'UTBETALD'\nGROUP BY ALL ORDER BY ar DESC, forman LIMIT 12")
    con = duckdb.connect()
    return sql, con.sql(sql).to_arrow_table()
