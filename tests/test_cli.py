"""The `zones` command: cheap to start, meaningful exit codes, --json for machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import REPO, write_project


def zones(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DATAZONES__")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "lifecycle.cli", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=300)


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys, lifecycle.cli; heavy = {'deltalake','pyarrow','duckdb','great_expectations','airflow',"
            "'sqlalchemy','adbc_driver_postgresql'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
    assert "promote" in zones("--help", cwd=REPO).stdout


def test_cli_end_to_end_with_exit_codes(tmp_path: Path) -> None:
    cfg = write_project(tmp_path, datasets=["individ", "arende", "beslut", "utbetalning"])
    assert zones("demo", "seed", "--as-of", "2026-01-01T00:00:00+00:00", cwd=tmp_path).returncode == 0
    assert zones("validate", cwd=tmp_path).returncode == 0
    res = zones("promote", "--all", "--json", "--as-of", "2026-01-01T01:00:00+00:00", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    reports = json.loads(res.stdout)
    assert [r["dataset"] for r in reports] == ["individ", "arende", "beslut", "utbetalning"]
    assert all(r["rows_written"] > 0 and r["mode"] == "full" for r in reports)
    status = json.loads(zones("status", "--json", cwd=tmp_path).stdout)
    assert all(s["hot_rows"] == s["warm_rows"] > 0 for s in status)
    assert zones("ledger", "verify", cwd=tmp_path).returncode == 0
    assert zones("demo", "query", cwd=tmp_path).returncode == 0
    # unknown dataset -> 2; bad config -> 2 with file:line; missing key -> 4
    assert zones("promote", "nosuch", cwd=tmp_path).returncode == 2
    bad = cfg.read_text().replace("watermark: andrad", "watermark_col: andrad", 1)
    (tmp_path / "bad.yaml").write_text(bad)
    res = zones("validate", "--config", "bad.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "bad.yaml:" in res.stderr and "watermark_col" in res.stderr
    res = zones("promote", "utbetalning", cwd=tmp_path, env={"DATAZONES_PSEUDONYM_KEY": ""})
    assert res.returncode == 2 and "DATAZONES_PSEUDONYM_KEY" in res.stderr
    # tamper with the ledger -> verify exits 1
    eng = sa.create_engine(f"sqlite:///{tmp_path}/.datazones/ledger.db")
    with eng.begin() as c:
        c.execute(sa.text("DELETE FROM dz_events WHERE seq = 2"))
    res = zones("ledger", "verify", cwd=tmp_path)
    assert res.returncode == 1 and "seq 3" in res.stdout
