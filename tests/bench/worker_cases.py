"""Bench cases through a warm ``zones worker``: the same full load, 1 % incremental and no-op as the fresh-process
cases, each command a fresh ``zones`` client whose wall time is measured (the client's start included); the
worker imported everything once before the first case. The worker's children are not the client's: their peak
RSS and CPU are not measured here (the fresh-process cases measure the same work's)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.bench.cases import (
    FULL_AS_OF,
    REPO,
    WORK,
    ZONES,
    Result,
    promote,
    run_zones_full,
    run_zones_incremental,
    zones_env,
    zones_folder,
)
from tests.bench.measure import child_env

WORKER_CASES = ("worker-full", "worker-full-nogate", "worker-incremental", "worker-noop")


@contextmanager
def warm_worker() -> Iterator[tuple[Path, float]]:
    """A ``zones worker`` on a socket under /tmp/dz-bench; yields the socket and the seconds it took to be ready."""
    sock = WORK / "worker" / "worker.sock"
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(ZONES), "worker", "--socket", str(sock)], cwd=REPO, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        while not sock.exists():
            if proc.poll() is not None:
                why = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"zones worker exited {proc.returncode}: {why}")
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("zones worker did not listen within 120 s")
            time.sleep(0.02)
        yield sock, time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_worker_full(rows: int, sock: Path) -> tuple[Result, Path, dict[str, str]]:
    folder, env = zones_folder("datazones-worker-full"), {**zones_env(rows), "DATAZONES_WORKER": str(sock)}
    res = promote("worker-full", folder, env, FULL_AS_OF, rows, full_load=True)
    res.peak_mb = res.cpu_s = None  # the client's, not the worker child's
    if not res.error:
        rep = res.detail["report"]
        if rep["rows_written"] != rows or res.detail["warm_rows"] != rows:
            res.error = f"check failed: wrote {rep['rows_written']:,}, warm holds {res.detail['warm_rows']}"
        if "running the command in this process" in res.detail.get("stderr", ""):  # any fallback
            res.error = "the command did not run in the worker: " + res.detail["stderr"][-200:]
    return res, folder, env


def run_worker_incremental(rows: int, folder: Path, env: dict[str, str]) -> list[Result]:
    pair = run_zones_incremental(rows, folder, env)
    for r, name in zip(pair, ("worker-incremental", "worker-noop"), strict=True):
        r.case, r.peak_mb, r.cpu_s = name, None, None
    return pair


def run_worker_nogate(rows: int) -> Result:
    """The control of worker-full: the same load with a pass-through gate in a process that first loads what the
    worker loads (GX included) and freezes it. Its seconds are promote's own time (the preload is not timed),
    compared with worker-full's promote time: the difference is what GX's validations cost a warm worker."""
    res = run_zones_full(rows, "datazones-worker-full-nogate", gate=False, preload=True)[0]
    res.case = "worker-full-nogate"
    total = ((res.detail.get("report") or {}).get("timings") or {}).get("total")
    res.seconds, res.cpu_s, res.peak_mb, res.full_load = total, None, None, False
    return res
