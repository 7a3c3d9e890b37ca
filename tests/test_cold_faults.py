"""Kill -9 style crashes across archive, warm delete, purge and dispose; rerun: nothing lost, doubled or half-done."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from lifecycle import dispose
from lifecycle.archive import FAULT_POINTS as ARCHIVE_POINTS
from lifecycle.archive import archive
from lifecycle.cold_status import package_rows
from lifecycle.ledger import Ledger
from tests.conftest import REPO, pg_url
from tests.test_cold import NOW, assert_once, csv_of, hot_table, ready

POINTS = [*ARCHIVE_POINTS, "purge_after_batch", "dispose_after_proof", "dispose_after_delete"]


def _run(cfg: Path, mode: str, dataset: str, fault: str | None, plan: str = "") -> int:
    env = {k: v for k, v in os.environ.items() if k != "DATAZONES_FAULT"}
    if fault:
        env["DATAZONES_FAULT"] = fault
    r = subprocess.run([sys.executable, "-m", "tests.fault_runner_cold", str(cfg), mode, dataset, NOW.isoformat(),
                        plan], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 137), r.stderr[-3000:]
    return r.returncode


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_crash_then_rerun_keeps_every_row_once(point: str, pg_schema: str, tmp_path: Path) -> None:
    assert len(POINTS) >= 6
    project = ready({"hot": pg_url(pg_schema), "ledger": pg_url(pg_schema)}, tmp_path)
    cfg = project.file
    ledger = Ledger(project.ledger_url)
    ids = sorted(r["intyg_id"] for r in hot_table(project, "lakarintyg"))
    if point.startswith("archive"):
        assert _run(cfg, "archive", "lakarintyg", f"{point}:2") == 137
        assert _run(cfg, "archive", "lakarintyg", None) == 0
    elif point.startswith("purge"):
        archive(project, "lakarintyg", as_of=NOW, execute=True, reference_validator=False)
        assert _run(cfg, "purge", "lakarintyg", f"{point}:1") == 137
        assert _run(cfg, "purge", "lakarintyg", None) == 0
        left = {r["intyg_id"] for r in hot_table(project, "lakarintyg")}
        assert left < set(ids)  # purged, and (below) every purged row is still in warm or cold
    else:
        archive(project, "lakarintyg", as_of=NOW, execute=True, reference_validator=False)
        plan = dispose.plan(project, ledger, by="A", as_of=NOW)
        dispose.approve(ledger, plan["plan_id"], by="B")
        planned = {e["package_id"] for e in plan["packages"]}
        gone = {int(v) for p in package_rows(ledger, "lakarintyg") if p["package_id"] in planned
                for v in csv_of(p).column("intyg_id").to_pylist()}
        assert _run(cfg, "dispose", "lakarintyg", f"{point}:1", plan["plan_id"]) == 137
        assert _run(cfg, "dispose", "lakarintyg", None, plan["plan_id"]) == 0
        with ledger.engine.connect() as c:
            proofs = c.execute(sa.text("SELECT package_id, state FROM dz_disposals")).all()
        assert {p for p, _ in proofs} == planned and {s for _, s in proofs} == {"disposed"}
        for p in package_rows(ledger, "lakarintyg"):
            assert (p["status"] == "disposed") == (p["package_id"] in planned)
            assert Path(p["path"]).exists() == (p["status"] != "disposed")
        assert dispose.verify_register(ledger) == []
        assert gone
        ids = [i for i in ids if i not in gone]  # disposed on purpose, with proof
    assert_once(project, "lakarintyg", "intyg_id", ids)
    cold = Path(project.zone_uri("cold"))
    verified = {Path(p["path"]).name for p in package_rows(ledger) if p["status"] == "verified"}
    assert {b.name for b in (cold / "lakarintyg").glob("*.bag")} == verified  # nothing unverified in use
    staging = cold / ".staging"
    assert not staging.exists() or not list(staging.glob("*.bag"))
    assert ledger.verify() == []

