"""Kill -9 style crashes (os._exit inside promote) at every named point, then rerun: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lifecycle import demo
from lifecycle.ledger import Ledger
from lifecycle.promote import FAULT_POINTS
from lifecycle.warm import WarmTable
from tests.conftest import REPO, pg_url
from tests.helpers import assert_warm_matches_hot
from tests.test_promote import AS_OF, seeded_project
from zones.hot import make_engine

DATASET = "utbetalning"


def _run(cfg: Path, as_of: str, fault: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("DATAZONES_FAULT", None)
    if fault:
        env["DATAZONES_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "tests.fault_runner", str(cfg), DATASET, as_of, "700"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("point", FAULT_POINTS)
def test_crash_at_point_then_rerun_loses_and_duplicates_nothing(point: str, pg_schema: str, tmp_path: Path) -> None:
    assert len(FAULT_POINTS) >= 5
    backend = {"hot": pg_url(pg_schema), "ledger": pg_url(pg_schema)}
    project = seeded_project(backend, tmp_path, datasets=[DATASET])
    cfg = project.file
    eng = make_engine(project.hot_url)
    with eng.begin() as c:  # a few rows that fail the contract, so the quarantine path is crossed too
        c.execute(sa.text("ALTER TABLE utbetalning ALTER COLUMN utbetald DROP NOT NULL"))
        bad = c.execute(sa.text("UPDATE utbetalning SET utbetald = NULL WHERE utbetalning_id IN (SELECT "
                                "utbetalning_id FROM utbetalning ORDER BY utbetalning_id LIMIT 3 OFFSET 900) "
                                "RETURNING utbetalning_id")).scalars().all()
        bad = list(bad)
    eng.dispose()
    # full load: die at the 2nd hit of the point (mid-run, after some pages committed)
    nth = "1" if point in ("after_last_page", "after_quarantine") else "2"
    crashed = _run(cfg, AS_OF.isoformat(), f"{point}:{nth}")
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    rerun = _run(cfg, AS_OF.isoformat(), None)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_warm_matches_hot(project, DATASET)
    # incremental: churn, die again, rerun
    eng = make_engine(project.hot_url)
    demo.churn(eng, as_of=AS_OF + timedelta(days=1), seed=5, fraction=0.3)
    with eng.begin() as c:  # and one more contract failure inside the incremental window
        bad += c.execute(sa.text("UPDATE utbetalning SET utbetald = NULL, andrad = :t WHERE utbetalning_id = "
                                 "(SELECT max(utbetalning_id) FROM utbetalning) RETURNING utbetalning_id"),
                         {"t": AS_OF + timedelta(days=1)}).scalars().all()
    eng.dispose()
    later = (AS_OF + timedelta(days=1, hours=1)).isoformat()
    crashed = _run(cfg, later, f"{point}:1")
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    rerun = _run(cfg, later, None)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_warm_matches_hot(project, DATASET)
    ledger = Ledger(project.ledger_url)
    assert ledger.verify() == []
    assert ledger.open_batches(DATASET, "promote") == []
    q = WarmTable(project.quarantine_uri(DATASET)).to_arrow(columns=["utbetalning_id", "_dz_batch"]).to_pylist()
    pairs = [(r["utbetalning_id"], r["_dz_batch"]) for r in q]
    assert len(pairs) == len(set(pairs)), "a quarantined row was written twice for one batch"
    assert {str(b) for b in bad} <= {r["utbetalning_id"] for r in q}
