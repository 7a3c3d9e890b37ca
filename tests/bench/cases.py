"""The bench cases: each runs in a fresh child process from empty output folders under /tmp/dz-bench/."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.bench import data
from tests.bench.measure import Measured, child_env, run_measured

REPO = Path(__file__).resolve().parents[2]
WORK = Path("/tmp/dz-bench")
PY = REPO / ".venv" / "bin" / "python"
ZONES = REPO / ".venv" / "bin" / "zones"
HOT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FULL_AS_OF = "2026-06-01T00:00:00+00:00"
INCR_AS_OF = "2026-06-02T00:00:00+00:00"


@dataclass
class Result:
    case: str
    rows: int | None = None
    seconds: float | None = None
    peak_mb: float | None = None
    error: str | None = None
    cpu_s: float | None = None  # user + system seconds of the child process tree (not the database server's)
    full_load: bool = True  # throughput ratios are meaningful only for full loads
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        if self.error or not self.rows or not self.seconds:
            return None
        return self.rows / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "rows": self.rows, "seconds": self.seconds, "rows_per_s": self.rate,
                "peak_rss_mb": self.peak_mb, "cpu_s": self.cpu_s, "error": self.error, "full_load": self.full_load,
                **self.detail}


def fresh(name: str) -> Path:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _result(case: str, m: Measured, rows: int | None, **detail: Any) -> Result:
    return Result(case, rows, round(m.seconds, 3), round(m.peak_mb, 1) if m.peak_mb else None,
                  cpu_s=m.cpu_s, detail={"rss_method": m.rss_method, **detail})


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


_EXC = re.compile(r"^([\w.]*(Error|Exception|Exit)\b|configuration error|transient)")


def _summary(stderr: str) -> str:
    """The exception line of a child's stderr (with its wrapped continuation), else the last line."""
    lines = stderr.strip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if _EXC.match(lines[i]):
            block = [lines[i]]
            for more in lines[i + 1:]:
                if not more.strip() or _EXC.match(more):
                    break
                block.append(more.strip())
            return " ".join(block)[:400]
    return lines[-1][:400] if lines else "(no stderr)"


def delta_rows(path: Path) -> int | None:
    """Rows in a Delta table (from Parquet footers), or None if it cannot be read."""
    try:
        from deltalake import DeltaTable

        return int(DeltaTable(str(path)).to_pyarrow_dataset().count_rows())
    except Exception:
        return None


def run_limit(rows: int) -> Result:
    sql = f"COPY (SELECT * FROM {data.qualified(rows)}) TO STDOUT (FORMAT binary)"
    m = run_measured(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-X", "-c", sql],
                     env=child_env(), discard_stdout=True)
    res = _result("limit", m, rows)
    if m.rc:
        res.error = f"psql exit {m.rc}: {_tail(m.stderr, 3)}"
    return res


def run_dlt(backend: str, rows: int) -> Result:
    case = f"dlt-{backend}"
    work = fresh(case)
    m = run_measured([str(PY), "-m", "tests.bench.dlt_peer", backend, data.table_name(rows), str(work)],
                     env=child_env(RUNTIME__DLTHUB_TELEMETRY="false", PYTHONPATH=str(REPO)), cwd=work)
    res = _result(case, m, rows)
    if m.rc:
        res.error = f"dlt exit {m.rc}: {_summary(m.stderr)}"
        res.detail["stderr"] = _tail(m.stderr)
        return res
    out = json.loads(m.stdout.strip().splitlines()[-1])
    res.detail["inner_seconds"] = out["seconds"]
    written = delta_rows(Path(out["delta_path"]))
    res.detail["delta_rows"] = written
    if out["rows"] != rows or written != rows:
        res.error = f"row count: normalized {out['rows']}, in Delta {written}, want {rows}"
    return res


# --- datazones -------------------------------------------------------------------------------------------------

def zones_folder(name: str) -> Path:
    """A fresh folder with a bench zones.yaml: only `utbetalning`, local warm/cold and a SQLite ledger in it."""
    folder = fresh(name)
    cfg = yaml.safe_load((REPO / "zones.yaml").read_text(encoding="utf-8"))
    cfg["datasets"] = {"utbetalning": cfg["datasets"]["utbetalning"]}
    cfg["ledger"] = {"url": "sqlite:///ledger.db"}
    cfg["warm"] = {"provider": "local", "path": "warm"}
    cfg["cold"] = {"provider": "local", "path": "cold"}
    (folder / "zones.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def zones_env(rows: int) -> dict[str, str]:
    return child_env(DATAZONES__HOT__URL=HOT_URL, DATAZONES__HOT__SCHEMA=data.SCHEMA,
                     DATAZONES__DATASETS__UTBETALNING__TABLE=data.table_name(rows),
                     DATAZONES_PSEUDONYM_KEY=secrets.token_hex(32), DATAZONES_SEAL_KEY=secrets.token_hex(32),
                     _TYPER_STANDARD_TRACEBACK="1", TERM="dumb", COLUMNS="400")


def promote(case: str, folder: Path, env: dict[str, str], as_of: str, rows: int, *, full_load: bool,
            gate: bool = True, preload: bool = False) -> Result:
    config = str(folder / "zones.yaml")
    argv = ([str(ZONES), "promote", "utbetalning", "--config", config, "--json", "--as-of", as_of] if gate
            else [str(PY), "-m", "tests.bench.nogate_child", config, as_of, *(["--preload"] if preload else [])])
    m = run_measured(argv, env=env if gate else {**env, "PYTHONPATH": str(REPO)}, cwd=folder)
    res = _result(case, m, None)
    res.full_load = full_load
    if m.rc:
        res.error = f"zones exit {m.rc}: {_summary(m.stderr)}"
        res.detail["stderr"] = _tail(m.stderr, 60)
        return res
    try:
        reports = json.loads(m.stdout)
        rep = reports[0]
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        res.error = f"could not parse --json output ({exc}): {m.stdout[:200]!r}"
        return res
    res.rows = int(rep.get("rows_read") or 0) if not full_load else int(rep.get("rows_written") or 0)
    res.detail.update(report={k: rep.get(k) for k in ("mode", "rows_read", "rows_written", "rows_quarantined",
                                                       "batches", "delta_version", "watermark_from",
                                                       "watermark_to", "bytes_written", "timings", "checks")})
    res.detail["warm_rows"] = delta_rows(folder / "warm" / "utbetalning")
    if m.stderr.strip():
        res.detail["stderr"] = _tail(m.stderr, 10)
    return res


def _check(res: Result, ok: bool, message: str) -> None:
    if not ok and not res.error:
        res.error = f"check failed: {message}"


def run_zones_full(rows: int, name: str, *, gate: bool = True,
                   preload: bool = False) -> tuple[Result, Path, dict[str, str]]:
    """The full promote of the bench table into an empty warm zone; ``gate=False`` is the control run with a
    pass-through gate instead of GX (the difference is the GX gate's cost); ``preload`` makes that control
    import first what a warm worker has loaded (GX included) and freeze it, as the worker does."""
    folder, env = zones_folder(name), zones_env(rows)
    res = promote(name, folder, env, FULL_AS_OF, rows, full_load=True, gate=gate, preload=preload)
    if not res.error:
        rep = res.detail["report"]
        _check(res, rep["rows_written"] == rows, f"rows_written {rep['rows_written']:,} != {rows:,}")
        _check(res, res.detail["warm_rows"] == rows, f"warm holds {res.detail['warm_rows']} rows, want {rows:,}")
    return res, folder, env


def run_zones_incremental(rows: int, folder: Path, env: dict[str, str]) -> list[Result]:
    """Churn 1 % of the table, promote it (timed), promote again (no-op, timed); always revert the churn."""
    try:
        updated, inserted = data.apply_churn(rows)
        inc = promote("datazones-incremental", folder, env, INCR_AS_OF, rows, full_load=False)
        inc.detail["churn"] = {"updated": updated, "inserted": inserted}
        if not inc.error:
            rep = inc.detail["report"]
            want = updated + inserted
            _check(inc, rep["rows_read"] >= want, f"rows_read {rep['rows_read']:,} < churned {want:,}")
            _check(inc, inc.detail["warm_rows"] == rows + inserted,
                   f"warm holds {inc.detail['warm_rows']} rows, want {rows + inserted:,} (merge duplicated/lost?)")
        noop = promote("datazones-noop", folder, env, INCR_AS_OF, rows, full_load=False)
        if not noop.error:
            rep = noop.detail["report"]
            noop.rows = int(rep.get("rows_read") or 0)
            _check(noop, rep["rows_read"] == 0, f"no-op read {rep['rows_read']:,} rows")
        return [inc, noop]
    finally:
        data.undo_churn(rows)


def python_version() -> str:
    return sys.version.split()[0]
