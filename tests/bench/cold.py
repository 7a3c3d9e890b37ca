"""The cold-zone cases (warm → cold), run after datazones-full on its warm table, each in a fresh child process.

cold-limit         the warm rows as text through pyarrow's CSV writer into a file, sha256 over the same bytes
datazones-archive  lifecycle.archive.archive(execute=False, reference_validator=False), every period due (as of
                   2040), from an empty cold folder and a copy of datazones-full's ledger
audit-limit        hashlib over every file of the packages just built: sha256 + the bags' manifest algorithms,
                   (file, algorithm) jobs on ThreadPoolExecutor(2), 4 MiB chunks
datazones-audit    lifecycle.cold_status.run_audit over those packages

Bars compare wall times of fresh processes: both cold-limit and datazones-archive include the Delta read (and
interpreter start and imports); the in-process timings of each are printed and kept in the JSON.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from tests.bench.cases import PY, REPO, WORK, Result, _result, _summary, _tail, fresh
from tests.bench.measure import add_bar, run_measured

COLD_CASES = ("cold-limit", "datazones-archive", "audit-limit", "datazones-audit")
NEEDS = {"cold-limit": "datazones-full", "datazones-archive": "datazones-full", "audit-limit": "datazones-archive",
         "datazones-audit": "datazones-archive"}
PEER = {"datazones-archive": "cold-limit", "datazones-audit": "audit-limit"}
ARCHIVE_AS_OF = "2040-01-01T00:00:00+00:00"
ARCHIVE_BAR, AUDIT_BAR = 0.5, 0.6


def _clean(name: str) -> Path:
    """``fresh(name)``, after making the read-only packages of an earlier run removable."""
    path = WORK / name
    if path.exists():
        for root, dirs, _ in os.walk(path):
            os.chmod(root, 0o750)
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o750)
    return fresh(name)


def gb_rate(r: Result | None) -> float | None:
    """Bytes per second (in GB/s) of a case that reports bytes."""
    if r is None or r.error or not r.seconds or not r.detail.get("bytes"):
        return None
    return float(r.detail["bytes"]) / r.seconds / 1e9


def inner_vs_limit(r: Result | None, by: dict[str, Result]) -> float | None:
    """As :func:`vs_limit`, on the in-process seconds (without interpreter start, imports and config load)."""
    peer = by.get(PEER.get(r.case, "")) if r else None
    if r is None or peer is None or r.error or peer.error:
        return None
    mine, theirs = inner_seconds(r), inner_seconds(peer)
    size = "rows" if r.case == "datazones-archive" else "bytes"
    a = (r.rows if size == "rows" else r.detail.get("bytes")) or 0
    b = (peer.rows if size == "rows" else peer.detail.get("bytes")) or 0
    return (a / mine) / (b / theirs) if mine and theirs and a and b else None


def vs_limit(r: Result, by: dict[str, Result]) -> float | None:
    """Throughput ÷ its limit's: rows/s for the archive, bytes/s for the audit."""
    peer = by.get(PEER.get(r.case, ""))
    if peer is None or r.error or peer.error:
        return None
    a, b = (r.rate, peer.rate) if r.case == "datazones-archive" else (gb_rate(r), gb_rate(peer))
    return a / b if a and b else None


@dataclass
class ColdRun:
    """State shared by the cold cases of one bench run (the keys of datazones-full exist only in its env)."""

    full_folder: Path
    env: dict[str, str]
    rows: int  # rows in the warm table datazones-full left
    done: dict[str, Result] = field(default_factory=dict)
    archive_folder: Path = WORK / "datazones-archive"

    def _child(self, case: str, *args: str) -> tuple[Result, dict[str, Any] | None]:
        m = run_measured([str(PY), "-m", "tests.bench.cold_child", *args],
                         env={**self.env, "PYTHONPATH": str(REPO)}, cwd=WORK)
        res = _result(case, m, None)
        res.full_load = False
        if m.rc:
            res.error = f"exit {m.rc}: {_summary(m.stderr)}"
            res.detail["stderr"] = _tail(m.stderr, 40)
            return res, None
        try:
            return res, json.loads(m.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            res.error = f"could not parse the child's JSON ({exc}): {m.stdout[-200:]!r}"
            return res, None

    def run(self, case: str) -> Result:
        need = NEEDS[case]
        if need != "datazones-full" and (need not in self.done or self.done[need].error):
            res = Result(case, error=f"skipped: {need} failed", full_load=False)
        else:
            res = getattr(self, "_" + case.replace("-", "_"))()
        self.done[case] = res
        return res

    def _cold_limit(self) -> Result:
        work = _clean("cold-limit")
        res, out = self._child("cold-limit", "limit", str(self.full_folder / "warm" / "utbetalning"),
                               str(work / "utbetalning.csv"))
        if out:
            res.rows = out["rows"]
            res.detail.update(bytes=out["bytes"], columns=out["columns"], timings=out["timings"])
            _check(res, out["rows"] == self.rows, f"wrote {out['rows']:,} rows, warm holds {self.rows:,}")
        shutil.rmtree(work, ignore_errors=True)
        return res

    def _datazones_archive(self) -> Result:
        folder = _clean("datazones-archive")
        cfg = yaml.safe_load((self.full_folder / "zones.yaml").read_text(encoding="utf-8"))
        cfg["warm"] = {"provider": "local", "path": str(self.full_folder / "warm")}
        cfg["cold"] = {"provider": "local", "path": "cold"}
        cfg["ledger"] = {"url": "sqlite:///ledger.db"}
        (folder / "zones.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), "utf-8")
        shutil.copy2(self.full_folder / "ledger.db", folder / "ledger.db")  # the warm table's history, no packages
        self.archive_folder = folder
        res, out = self._child("datazones-archive", "archive", str(folder / "zones.yaml"), ARCHIVE_AS_OF)
        if out:
            rep, pkgs = out["report"], out["packages"]
            res.rows = sum(p["rows"] for p in pkgs)
            res.detail.update(bytes=sum(p["bytes"] for p in pkgs), packages=len(pkgs), cold=out["cold"],
                              report={k: rep.get(k) for k in ("mode", "rows_read", "rows_written", "bytes_written",
                                                               "batches", "timings")},
                              timings=rep["timings"])
            _check(res, res.rows == self.rows, f"packages hold {res.rows:,} rows, warm holds {self.rows:,}")
            _check(res, rep["rows_written"] == self.rows, f"rows_written {rep['rows_written']:,} != {self.rows:,}")
            _check(res, rep["batches"] == len(pkgs) > 0, f"{rep['batches']} packages built, ledger lists {len(pkgs)}")
        return res

    def _audit_limit(self) -> Result:
        res, out = self._child("audit-limit", "audit-limit", str(self.archive_folder / "cold" / "utbetalning"))
        if out:
            res.rows = self.done["datazones-archive"].rows
            res.detail.update({k: out[k] for k in ("packages", "files", "bytes", "hash_jobs", "timings")})
            want = self.done["datazones-archive"].detail.get("packages")
            _check(res, out["packages"] == want, f"found {out['packages']} bags, the archive built {want}")
        return res

    def _datazones_audit(self) -> Result:
        res, out = self._child("datazones-audit", "audit", str(self.archive_folder / "zones.yaml"))
        if out:
            res.rows = self.done["datazones-archive"].rows
            res.detail.update({k: out[k] for k in ("packages", "ok", "files", "bytes", "timings", "problems")})
            want = self.done["datazones-archive"].detail.get("packages")
            _check(res, out["packages"] == want, f"audited {out['packages']} packages, the archive built {want}")
            _check(res, out["ok"] == out["packages"], f"{out['packages'] - out['ok']} package(s) failed: "
                   f"{out['problems'][:3]}")
        return res


def _check(res: Result, ok: bool, message: str) -> None:
    if not ok and not res.error:
        res.error = f"check failed: {message}"


def skipped(cases: list[str], why: str) -> list[Result]:
    return [Result(c, error=f"skipped: {why}", full_load=False) for c in cases if c in COLD_CASES]


def inner_seconds(r: Result) -> float | None:
    t = r.detail.get("timings") or {}
    return t.get("total") or (sum(t.values()) if t else None)


def render(results: list[Result], console: Console) -> None:
    cold = [r for r in results if r.case in COLD_CASES]
    if not cold:
        return
    by = {r.case: r for r in results}
    t = Table(title="warm → cold: Delta → E-ARK packages, and their audit (wall time of a fresh process, Delta read "
              "included; vs limit = throughput ÷ its limit's)")
    for c in ("case", "rows", "MB", "seconds", "in-process s", "rows/s", "GB/s", "peak RSS MB", "vs limit"):
        t.add_column(c, justify="left" if c == "case" else "right")
    for r in cold:
        size = r.detail.get("bytes")
        cells = [r.case, f"{r.rows:,}" if r.rows else "—", f"{size / 1e6:,.0f}" if size else "—",
                 f"{r.seconds:.2f}" if r.seconds else "—"]
        if r.error:
            t.add_row(*cells, "—", "—", "—", f"{r.peak_mb:.0f}" if r.peak_mb else "—", f"[red]{r.error[:110]}[/red]")
            continue
        inner, gbs, ratio = inner_seconds(r), gb_rate(r), vs_limit(r, by)
        t.add_row(*cells, f"{inner:.2f}" if inner else "—", f"{r.rate:,.0f}" if r.rate else "—",
                  f"{gbs:.3f}" if gbs else "—", f"{r.peak_mb:.0f}" if r.peak_mb else "—",
                  f"{ratio:.2f}×" if ratio else "—")
    console.print(t)
    for r in cold:
        timings = r.detail.get("timings")
        if timings and not r.error:
            parts = " · ".join(f"{k} {v:.2f}" for k, v in timings.items())
            extra = f", {r.detail['packages']} packages" if "packages" in r.detail else ""
            console.print(f"  {r.case}{extra} in-process s: {parts}", highlight=False)


def bars(results: list[Result], rss_limit_mb: float) -> list[dict[str, Any]]:
    by = {r.case: r for r in results}
    out: list[dict[str, Any]] = []

    bar = functools.partial(add_bar, out)

    arc, lim = by.get("datazones-archive"), by.get("cold-limit")
    v = vs_limit(arc, by) if arc else None
    bar(f"archive ≥ {ARCHIVE_BAR:g}× cold-limit throughput", v, lambda x: x >= ARCHIVE_BAR,
        f"{v or 0:.2f}× ({arc.seconds if arc else 0:.2f} s vs {lim.seconds if lim else 0:.2f} s for "
        f"{arc.rows if arc else 0:,} rows; in-process {inner_vs_limit(arc, by) or 0:.2f}×)",
        "needs cold-limit and datazones-archive")
    aud, alim = by.get("datazones-audit"), by.get("audit-limit")
    v = vs_limit(aud, by) if aud else None
    bar(f"audit ≥ {AUDIT_BAR:g}× audit-limit throughput", v, lambda x: x >= AUDIT_BAR,
        f"{v or 0:.2f}× ({gb_rate(aud) or 0:.3f} GB/s vs {gb_rate(alim) or 0:.3f} GB/s; in-process "
        f"{inner_vs_limit(aud, by) or 0:.2f}×)",
        "needs audit-limit and datazones-audit")
    zs = [r for r in (arc, aud) if r and not r.error and r.peak_mb]
    v = max((r.peak_mb for r in zs if r.peak_mb), default=None)
    worst = max(zs, key=lambda r: r.peak_mb or 0).case if zs else ""
    bar(f"archive/audit peak RSS ≤ {rss_limit_mb:g} MB", v, lambda x: x <= rss_limit_mb, f"{v or 0:.0f} MB ({worst})",
        "needs datazones-archive or datazones-audit")
    return out
