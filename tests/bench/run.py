"""``make bench``: datazones promote vs dlt and the COPY limit (PostgreSQL); archive and audit vs their limits.

    .venv/bin/python -m tests.bench.run [--rows 5000000] [--big-rows 20000000] [--skip-big] [--skip-cold]
                                        [--repeat N] [--only CASE ...]

Cases (each a fresh child process, from empty folders under /tmp/dz-bench/): limit, dlt-connectorx, dlt-pyarrow,
datazones-full, datazones-full-nogate (the same run with a pass-through gate: the difference is what GX costs), then
the warm → cold cases on datazones-full's warm table (cold-limit, datazones-archive, audit-limit, datazones-audit:
see tests/bench/cold.py), datazones-incremental, datazones-noop, datazones-full-big. A case pulls in the case it
needs (the cold ones datazones-full; the audits datazones-archive). The tables
``bench.utbetalning_<rows>`` are built once and kept; the incremental case's 1 % churn is reverted afterwards.
Results: two tables, the bars as PASS/FAIL, and ``bench-results/bench.json``.

``--repeat N`` runs every hot → warm case N times — the throughput cases in N rounds of one run each, so the cases
a bar compares are measured side by side; the incremental pair each time from a copy of the warm zone the full
load left — and shows the run with the median wall time, its CPU, and the highest peak RSS of the N; the JSON
keeps every run. On this 2-core machine one run of a case moves by a second or more with the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import operator
import os
import platform
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.bench import cold, data
from tests.bench.cases import (
    PY,
    REPO,
    WORK,
    Result,
    python_version,
    run_dlt,
    run_limit,
    run_zones_full,
    run_zones_incremental,
)
from tests.bench.measure import PYCACHE, add_bar, warm_bytecode
from tests.bench.worker_cases import (
    WORKER_CASES,
    run_worker_full,
    run_worker_incremental,
    run_worker_nogate,
    warm_worker,
)

CASES = ("limit", "dlt-connectorx", "dlt-pyarrow", "datazones-full", "datazones-full-nogate", *cold.COLD_CASES,
         "datazones-incremental", "datazones-noop", *WORKER_CASES, "datazones-full-big")
PEERS = ("dlt-connectorx", "dlt-pyarrow", "limit")
RSS_LIMIT_MB = 1500.0
console = Console()
if not console.is_terminal:  # make's log: wide enough for the whole table
    console.width = max(console.width, 170)


def _m(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n:,}"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000, help="rows of the main table (default 5M)")
    ap.add_argument("--big-rows", type=int, default=20_000_000, help="rows of the memory-scaling table (default 20M)")
    ap.add_argument("--skip-big", action="store_true", help="skip datazones-full on the big table")
    ap.add_argument("--skip-cold", action="store_true",
                    help=f"skip the warm → cold cases ({', '.join(cold.COLD_CASES)})")
    ap.add_argument("--only", nargs="+", metavar="CASE", help=f"run only these cases (comma or space separated): "
                    f"{', '.join(CASES)}")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each hot → warm case N times; report the median run (default 1)")
    ap.add_argument("--out", default=str(REPO / "bench-results" / "bench.json"), help="JSON results file")
    args = ap.parse_args(argv)
    only = [c for item in (args.only or []) for c in item.split(",") if c]
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    wanted = set(only) - (set(cold.COLD_CASES) if args.skip_cold else set())
    for c in reversed(CASES):  # pull in what a wanted case needs (NEEDS points to earlier cases only)
        if c in wanted and c in cold.NEEDS:
            wanted.add(cold.NEEDS[c])
    args.added = sorted(wanted - set(only), key=CASES.index)
    args.cases = [c for c in CASES if (not only or c in wanted) and not (args.skip_big and c == "datazones-full-big")
                  and not (args.skip_cold and c in cold.COLD_CASES)]
    return args


def median_run(runs: list[Result]) -> Result:
    """The run with the median wall time (the lower middle of an even count), the highest peak RSS of all and
    every run's seconds and CPU in ``detail``; a failed run is returned as it is."""
    failed = [r for r in runs if r.error or r.seconds is None]
    if failed or len(runs) == 1:
        return failed[0] if failed else runs[0]
    ordered = sorted(runs, key=lambda r: r.seconds or 0.0)
    pick = ordered[(len(ordered) - 1) // 2]
    pick.peak_mb = max((r.peak_mb or 0.0) for r in runs) or None
    pick.detail["runs_s"] = [r.seconds for r in runs]
    pick.detail["runs_cpu_s"] = [r.cpu_s for r in runs]
    pick.detail["runs_total_s"] = [_total(r) for r in runs]
    return pick


def paired_share(a: Result | None, b: Result | None, key: str) -> tuple[float, int, list[float]] | None:
    """The median over rounds of (a − b) / a, from each round's own pair of runs (``key``: ``runs_s`` or
    ``runs_total_s``), and the number of rounds; the cases ran side by side in each round, so the machine's
    drift between rounds cancels. None without two full sets of rounds."""
    xs = (a.detail.get(key) or []) if a and not a.error else []
    ys = (b.detail.get(key) or []) if b and not b.error else []
    shares = sorted((x - y) / x for x, y in zip(xs, ys, strict=False) if x and y)
    if not shares or len(xs) != len(ys):
        return None
    n = len(shares)
    mid = shares[n // 2] if n % 2 else (shares[n // 2 - 1] + shares[n // 2]) / 2
    rounds = [(x - y) / x for x, y in zip(xs, ys, strict=False) if x and y]  # in round order, for the reader
    return mid, n, rounds


def incremental_runs(run: Callable[[], list[Result]], folder: Any, repeat: int,
                     names: tuple[str, str]) -> list[Result]:
    """``repeat`` runs of an incremental + no-op pair, each from a copy of the warm zone and ledger in ``folder``
    as the full load left them; the median of each."""
    pristine = folder.with_name(folder.name + "-pristine")
    if repeat > 1:
        shutil.rmtree(pristine, ignore_errors=True)
        shutil.copytree(folder, pristine)
    pairs: list[list[Result]] = []
    try:
        for i in range(repeat):
            if i:
                shutil.rmtree(folder)
                shutil.copytree(pristine, folder)
            try:
                pair = run()
            except Exception as exc:
                pair = [Result(c, error=f"harness: {type(exc).__name__}: {exc}", full_load=False) for c in names]
            for r in pair:
                console.print(f"  {r.case}: {r.seconds or 0:.2f} s, CPU {r.cpu_s or 0:.2f} s"
                              + (f"  [red]{r.error}[/red]" if r.error else ""), highlight=False)
            pairs.append(pair)
            if any(r.error for r in pair):
                break
    finally:
        shutil.rmtree(pristine, ignore_errors=True)
    return [median_run([p[k] for p in pairs]) for k in (0, 1)]


def _once(name: str, fn: Callable[[], Result]) -> Result:
    try:
        res = fn()
    except Exception as exc:  # a harness-side failure must not lose the other cases
        res = Result(name, error=f"harness: {type(exc).__name__}: {exc}")
    secs = f"{res.seconds:.2f} s" if res.seconds is not None else "—"
    console.print(f"  {name}: {secs}, CPU {res.cpu_s or 0:.2f} s, peak {res.peak_mb or 0:.0f} MB"
                  + (f"  [red]{res.error}[/red]" if res.error else ""), highlight=False)
    return res


def run_cases(args: argparse.Namespace, setup: list[str]) -> list[Result]:
    """The throughput cases run in rounds (each case once per round, ``--repeat`` rounds), so the cases a bar
    compares are measured side by side while the machine's speed drifts; then the cases that build on the full
    load's warm zone (cold, incremental) and the big table."""
    rows, cases, results, repeat = args.rows, args.cases, [], max(1, args.repeat)
    want_incr = {"datazones-incremental", "datazones-noop"} & set(cases)
    want_cold = [c for c in cold.COLD_CASES if c in cases]
    want_worker = set(WORKER_CASES) & set(cases)
    holder: dict[str, Any] = {}
    wholder: dict[str, Any] = {}

    def full() -> Result:
        res, holder["folder"], holder["env"] = run_zones_full(rows, "datazones-full")
        return res

    with warm_worker() if want_worker else contextlib.nullcontext((None, 0.0)) as (sock, ready_s):
        if sock is not None:
            setup.append(f"zones worker on {sock}: ready in {ready_s:.1f} s (imports, once)")
            console.print(f"[dim]{setup[-1]}[/dim]", highlight=False)

        def wfull() -> Result:
            res, wholder["folder"], wholder["env"] = run_worker_full(rows, sock)
            return res

        plan: list[tuple[str, Callable[[], Result]]] = []
        if "limit" in cases:
            plan.append(("limit", lambda: run_limit(rows)))
        for backend in ("connectorx", "pyarrow"):
            if f"dlt-{backend}" in cases:
                plan.append((f"dlt-{backend}", functools.partial(run_dlt, backend, rows)))
        if "datazones-full" in cases or "datazones-full-nogate" in cases or want_incr or want_cold:
            plan.append(("datazones-full", full))  # the folder and keys of the last round are kept
        if "datazones-full-nogate" in cases:
            plan.append(("datazones-full-nogate",
                         lambda: run_zones_full(rows, "datazones-full-nogate", gate=False)[0]))
        if want_worker:
            plan.append(("worker-full", wfull))
        if "worker-full-nogate" in cases:
            plan.append(("worker-full-nogate", lambda: run_worker_nogate(rows)))
        runs: dict[str, list[Result]] = {name: [] for name, _ in plan}
        for i in range(repeat):
            console.print(f"[bold]round {i + 1} of {repeat}[/bold]: {', '.join(runs)}", highlight=False)
            for name, fn in plan:
                if not (runs[name] and runs[name][-1].error):
                    runs[name].append(_once(name, fn))
        by = {name: median_run(rs) for name, rs in runs.items() if rs}
        results += by.values()
        full_res = by.get("datazones-full")
        if want_cold and full_res is not None:
            if full_res.error or runs["datazones-full"][-1].error:
                console.print(f"[yellow]skipped {', '.join(want_cold)}: datazones-full failed[/yellow]",
                              highlight=False)
                results += cold.skipped(want_cold, "datazones-full failed")
            else:  # before the incremental case changes the warm table
                run = cold.ColdRun(holder["folder"], holder["env"], full_res.detail.get("warm_rows") or rows)
                for c in want_cold:
                    console.print(f"[bold]{c}[/bold] …", highlight=False)
                    results.append(_once(c, functools.partial(run.run, c)))
        if want_incr and full_res is not None:
            console.print("[bold]datazones-incremental + datazones-noop[/bold] (1 % churn) …")
            if full_res.error or runs["datazones-full"][-1].error:
                results += [Result(c, error="skipped: datazones-full failed", full_load=False)
                            for c in ("datazones-incremental", "datazones-noop")]
            else:
                results += incremental_runs(lambda: run_zones_incremental(rows, holder["folder"], holder["env"]),
                                            holder["folder"], repeat, ("datazones-incremental", "datazones-noop"))
        wres = by.get("worker-full")
        if {"worker-incremental", "worker-noop"} & want_worker and wres is not None:
            console.print("[bold]worker-incremental + worker-noop[/bold] (1 % churn) …")
            if wres.error or runs["worker-full"][-1].error:
                results += [Result(c, error="skipped: worker-full failed", full_load=False)
                            for c in ("worker-incremental", "worker-noop")]
            else:
                results += incremental_runs(
                    lambda: run_worker_incremental(rows, wholder["folder"], wholder["env"]), wholder["folder"],
                    repeat, ("worker-incremental", "worker-noop"))
    if "datazones-full-big" in cases:
        setup_secs = data.ensure_table(args.big_rows, setup)
        console.print(f"  big table ready ({setup_secs:.1f} s)", highlight=False)
        console.print("[bold]datazones-full-big[/bold] …", highlight=False)
        results.append(median_run([_once("datazones-full-big",
                                         lambda: run_zones_full(args.big_rows, "datazones-full-big")[0])
                                   for _ in range(repeat)]))
    return results


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def ratios(res: Result, by: dict[str, Result]) -> dict[str, float | None]:
    if not res.full_load:
        return dict.fromkeys(PEERS)
    return {p: _ratio(res.rate, by[p].rate if p in by else None) for p in PEERS}


def bars(results: list[Result], rows: int, big_rows: int, repeat: int = 1) -> list[dict[str, Any]]:
    by = {r.case: r for r in results}
    full, big = by.get("datazones-full"), by.get("datazones-full-big")
    inc, noop = by.get("datazones-incremental"), by.get("datazones-noop")
    out: list[dict[str, Any]] = []

    bar = functools.partial(add_bar, out)

    def ok_rate(r: Result | None) -> float | None:
        return r.rate if r and not r.error else None

    for peer, need in (("dlt-connectorx", 1.0), ("dlt-pyarrow", 3.0)):
        v = _ratio(ok_rate(full), ok_rate(by.get(peer)))
        bar(f"full promote ≥ {need:g}× {peer} throughput", v, functools.partial(operator.le, need),
            f"{v or 0:.2f}×", f"needs datazones-full and {peer}")
    timings = (full.detail.get("report") or {}).get("timings") or {} if full and not full.error else {}
    gate = timings.get("gate", 0.0) + timings.get("gate_load", 0.0)  # validation + the one-off GX load
    v = gate / full.seconds if gate and full and full.seconds else None
    bar("GX gate time ≤ 15 % of the full promote time", v, lambda x: x <= 0.15,
        f"{(v or 0) * 100:.1f} % ({timings.get('gate', 0):.2f} s validating + {timings.get('gate_load', 0):.2f} s "
        f"loading GX, of {full.seconds if full else 0:.2f} s)",
        "needs datazones-full")
    nogate = by.get("datazones-full-nogate")
    paired = paired_share(full, nogate, "runs_s")
    if paired:
        v, n, rounds = paired
        shown = (f"{v * 100:.1f} % (median over {n} rounds of each round's full minus no-gate: "
                 f"{_pcts(rounds)}; medians {full.seconds if full else 0:.2f} s vs "
                 f"{nogate.seconds if nogate else 0:.2f} s)")
    else:
        v = ((full.seconds - nogate.seconds) / full.seconds if full and nogate and not full.error
             and not nogate.error and full.seconds and nogate.seconds else None)
        shown = (f"{(v or 0) * 100:.1f} % ({full.seconds if full else 0:.2f} s vs "
                 f"{nogate.seconds if nogate else 0:.2f} s without a gate; one run each, so ± the run-to-run noise)")
    bar("GX gate cost (full minus the same run with a pass-through gate) ≤ 15 % of the full promote time", v,
        lambda x: x <= 0.15, shown, "needs datazones-full and datazones-full-nogate")
    v = (inc.seconds / full.seconds if inc and full and not inc.error and not full.error and inc.seconds
         and full.seconds else None)
    bar("incremental (1 %) ≤ 5 % of full-load time", v, lambda x: x <= 0.05,
        f"{(v or 0) * 100:.1f} % ({inc.seconds if inc else 0:.2f} s vs {full.seconds if full else 0:.2f} s)",
        "needs datazones-full and datazones-incremental")
    v = noop.seconds if noop and not noop.error else None
    bar("no-op ≤ 2 s", v, lambda x: x <= 2.0, f"{v or 0:.2f} s", "needs datazones-noop")
    worker_bars(by, bar)
    zs = [r for r in results if r.case.startswith("datazones") and r.case not in cold.COLD_CASES and not r.error
          and r.peak_mb]
    v = max((r.peak_mb for r in zs if r.peak_mb), default=None)
    worst = max(zs, key=lambda r: r.peak_mb or 0).case if zs else ""
    bar(f"peak RSS ≤ {RSS_LIMIT_MB:g} MB", v, lambda x: x <= RSS_LIMIT_MB, f"{v or 0:.0f} MB ({worst})",
        "needs a datazones case")
    v = _ratio(big.peak_mb if big and not big.error else None, full.peak_mb if full and not full.error else None)
    bar(f"RSS {_m(big_rows)} within ±15 % of {_m(rows)}", v, lambda x: abs(x - 1) <= 0.15,
        f"{(big.peak_mb or 0) if big else 0:.0f} MB vs {(full.peak_mb or 0) if full else 0:.0f} MB = {v or 0:.2f}×",
        "needs datazones-full and the big table (not --skip-big)")
    return out + cold.bars(results, RSS_LIMIT_MB)


def _pcts(shares: list[float]) -> str:
    """Each round's share: their spread is the run-to-run noise of this machine (one round can even show the
    control slower than the gated run)."""
    return ", ".join(f"{x * 100:.1f}" for x in shares) + " %"


def gate_cpu(by: dict[str, Result]) -> dict[str, float] | None:
    """What the GX gate costs in CPU seconds: the full run's minus the pass-through control's (less noisy than
    their wall times on a busy 2-core machine)."""
    full, nogate = by.get("datazones-full"), by.get("datazones-full-nogate")
    if not (full and nogate and full.cpu_s and nogate.cpu_s) or full.error or nogate.error:
        return None
    gate = full.cpu_s - nogate.cpu_s
    return {"full": full.cpu_s, "nogate": nogate.cpu_s, "gate": gate, "share": gate / full.cpu_s}


def _total(r: Result | None) -> float | None:
    rep = (r.detail.get("report") or {}) if r and not r.error else {}
    return (rep.get("timings") or {}).get("total")


def worker_bars(by: dict[str, Result], bar: Callable[..., None]) -> None:
    """The same bars for runs through a warm ``zones worker`` (GX and the libraries imported once, before)."""
    wfull, winc = by.get("worker-full"), by.get("worker-incremental")
    ok = {k: r for k, r in (("full", wfull), ("inc", winc)) if r and not r.error and r.seconds}
    v = ok["inc"].seconds / ok["full"].seconds if len(ok) == 2 else None  # type: ignore[operator]
    bar("worker: incremental (1 %) ≤ 5 % of the full load, both through a warm worker", v, lambda x: x <= 0.05,
        f"{(v or 0) * 100:.1f} % ({(winc.seconds if winc else 0) or 0:.2f} s vs "
        f"{(wfull.seconds if wfull else 0) or 0:.2f} s)",
        "needs worker-full and worker-incremental")
    control = by.get("worker-full-nogate")
    paired = paired_share(wfull, control, "runs_total_s")
    t_full, t_nogate = _total(wfull), _total(control)
    if paired:
        v, n, rounds = paired
        shown = (f"{v * 100:.1f} % (median over {n} rounds: {_pcts(rounds)}; medians {t_full or 0:.2f} s vs "
                 f"{t_nogate or 0:.2f} s in promote)")
    else:
        v = (t_full - t_nogate) / t_full if t_full and t_nogate else None
        shown = f"{(v or 0) * 100:.1f} % ({t_full or 0:.2f} s vs {t_nogate or 0:.2f} s in promote)"
    bar("worker: GX gate cost (promote's own time: worker-full minus worker-full-nogate, the same process state "
        "with a pass-through gate) ≤ 15 %", v, lambda x: x <= 0.15, shown,
        "needs worker-full and worker-full-nogate")


def render(results: list[Result], checks: list[dict[str, Any]], repeat: int = 1) -> None:
    by = {r.case: r for r in results}
    runs = f"the median of {repeat} runs, " if repeat > 1 else ""
    t = Table(title=f"hot → warm: PostgreSQL → Delta ({runs}wall time of a fresh process; ratios = throughput ÷ "
              "peer's)")
    for c in ("case", "rows", "seconds", "CPU s", "rows/s", "peak RSS MB", "vs dlt-connectorx", "vs dlt-pyarrow",
              "vs limit"):
        t.add_column(c, justify="left" if c == "case" else "right")
    for r in (r for r in results if r.case not in cold.COLD_CASES):
        rat = ratios(r, by)
        cells = [f"{x:.2f}×" if x else "—" for x in rat.values()]
        if r.error:
            t.add_row(r.case, f"{r.rows:,}" if r.rows else "—", f"{r.seconds:.2f}" if r.seconds else "—", "—", "—",
                      f"{r.peak_mb:.0f}" if r.peak_mb else "—", f"[red]{r.error[:110]}[/red]", "", "")
            continue
        t.add_row(r.case, f"{r.rows:,}" if r.rows is not None else "—", f"{r.seconds:.2f}" if r.seconds else "—",
                  f"{r.cpu_s:.2f}" if r.cpu_s else "—", f"{r.rate:,.0f}" if r.rate else "—",
                  f"{r.peak_mb:.0f}" if r.peak_mb else "—", *cells)
    console.print(t)
    for r in (r for r in results if r.case not in cold.COLD_CASES):
        rep = r.detail.get("report")
        if rep and rep.get("timings"):
            parts = " · ".join(f"{k} {v:.2f}" for k, v in rep["timings"].items())
            console.print(f"  {r.case} ({rep.get('mode')}, {rep.get('batches')} batches) in-process s: {parts}",
                          highlight=False)
    share = gate_cpu(by)
    if share:
        console.print(f"  GX gate CPU (not a bar): {share['full']:.2f} s with the gate − {share['nogate']:.2f} s "
                      f"without = {share['gate']:.2f} s, {share['share'] * 100:.1f} % of the full run's CPU "
                      "(PostgreSQL's own CPU not counted)", highlight=False)
    cold.render(results, console)
    colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}
    for b in checks:
        console.print(f"[{colour[b['status']]}]{b['status']}[/] {b['bar']}: {b['detail']}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = datetime.now(UTC)
    WORK.mkdir(parents=True, exist_ok=True)
    setup: list[str] = []
    if {"limit", "dlt-connectorx", "dlt-pyarrow", "datazones-full", "datazones-incremental",
            "datazones-noop", *WORKER_CASES} & set(args.cases):
        data.ensure_table(args.rows, setup)
    site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"), None)
    secs = warm_bytecode(PY, [p for p in (site, *(REPO / n for n in ("zones", "lifecycle", "quality", "lineage",
                                                                     "catalog", "tests"))) if p and p.exists()])
    setup.append(f"bytecode cache {PYCACHE}: ready in {secs:.1f} s")
    if args.added:
        setup.append(f"also running {', '.join(args.added)} (needed by the cases asked for)")
    for line in setup:
        console.print(f"[dim]{line}[/dim]", highlight=False)
    t0, load0 = time.perf_counter(), os.getloadavg()
    results = run_cases(args, setup)
    checks = bars(results, args.rows, args.big_rows, args.repeat)
    render(results, checks, args.repeat)
    by = {r.case: r for r in results}
    load1 = os.getloadavg()
    if max(load0[0], load1[0]) > 0.5 * (os.cpu_count() or 1):
        console.print(f"[yellow]note: the machine was busy (load average {load0[0]:.1f} before, {load1[0]:.1f} "
                      "after the cases): timings are noisy[/yellow]", highlight=False)
    doc = {"started": started.isoformat(), "seconds": round(time.perf_counter() - t0, 1), "repeat": args.repeat,
           "loadavg_before": load0, "loadavg_after": load1, "rows": args.rows, "big_rows": args.big_rows,
           "cases": args.cases, "setup": setup,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": python_version()},
           "results": [{**r.to_dict(), "ratios": ratios(r, by),
                        **({"vs_limit": cold.vs_limit(r, by), "gb_per_s": cold.gb_rate(r)}
                           if r.case in cold.COLD_CASES else {})} for r in results], "bars": checks,
           "gate_cpu": gate_cpu(by)}
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, default=str, ensure_ascii=False)
    console.print(f"[dim]results → {out}[/dim]", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
