"""Run one bench case in a fresh child process: wall seconds, CPU seconds and the child's peak RSS.

CPU seconds are the user + system time of the child and every descendant it waited for (``RUSAGE_CHILDREN``
before and after): on this 2-core machine the wall time of a case moves by a second or more with the load of the
machine, its CPU time much less. PostgreSQL's backend is the server's process, not the child's: not counted.

Peak RSS comes from GNU ``/usr/bin/time -f %M`` (the kernel's ru_maxrss of the child, i.e. of its largest process);
without it, a poller sums the RSS of the child's process tree every 50 ms (which can miss a spike shorter than that).
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

GNU_TIME = Path("/usr/bin/time")


@dataclass
class Measured:
    rc: int
    seconds: float
    peak_mb: float | None
    stdout: str
    stderr: str
    rss_method: str
    cpu_s: float | None = None


def _gnu_time_ok() -> bool:
    if not GNU_TIME.exists():
        return False
    r = subprocess.run([str(GNU_TIME), "-f", "%M", "true"], capture_output=True, text=True, check=False)
    return r.returncode == 0 and r.stderr.strip().isdigit()


_USE_GNU_TIME = _gnu_time_ok()


def run_measured(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                 discard_stdout: bool = False, timeout: float = 3600.0) -> Measured:
    with tempfile.TemporaryDirectory(prefix="dz-measure-") as tmp:
        out_path, err_path, rss_path = Path(tmp, "out"), Path(tmp, "err"), Path(tmp, "rss")
        argv = list(cmd)
        if _USE_GNU_TIME:
            argv = [str(GNU_TIME), "-f", "%M", "-o", str(rss_path), *argv]
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            stdout = subprocess.DEVNULL if discard_stdout else out_f
            t0, ru0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.Popen(argv, env=dict(env) if env is not None else None, cwd=cwd, stdout=stdout,
                                    stderr=err_f)
            peak = 0 if _USE_GNU_TIME else _poll_tree(proc, timeout)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            seconds = time.perf_counter() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        peak_mb: float | None = peak / 2**20 if peak else None
        if _USE_GNU_TIME and rss_path.exists():
            last = (rss_path.read_text().strip().splitlines() or [""])[-1]
            peak_mb = int(last) / 1024 if last.isdigit() else None
        return Measured(rc, seconds, peak_mb, out_path.read_text(errors="replace"),
                        err_path.read_text(errors="replace"), "gnu-time" if _USE_GNU_TIME else "psutil-50ms",
                        round(cpu, 3))


def _poll_tree(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Peak of the summed RSS of ``proc`` and its descendants, polled every 50 ms until it exits."""
    peak, deadline = 0, time.monotonic() + timeout
    try:
        root = psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        return 0
    while proc.poll() is None and time.monotonic() < deadline:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        except psutil.NoSuchProcess:
            break
        peak = max(peak, total)
        time.sleep(0.05)
    return peak


# Children cache bytecode here (not in the venv): a cron-started process normally finds its .pyc files; without
# them every start re-compiles the sources (~2 s of a no-op promote here, where PYTHONDONTWRITEBYTECODE is set).
PYCACHE = Path("/tmp/dz-bench/pycache")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATAZONES", "DLT_", "RUNTIME__")) and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra)
    return env


def warm_bytecode(python: Path, paths: Sequence[Path]) -> float:
    """Compile the venv and the repo packages into PYCACHE once (later runs only stat the files). Seconds."""
    t0 = time.perf_counter()
    subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", *map(str, paths)], env=child_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def add_bar(out: list[dict[str, Any]], name: str, value: float | None, ok: Callable[[float], bool], shown: str,
            missing: str) -> None:
    """Append one bar: SKIP without a value (``missing`` says what it needs), else PASS/FAIL by ``ok(value)``."""
    status = "SKIP" if value is None else ("PASS" if ok(value) else "FAIL")
    out.append({"bar": name, "status": status, "value": value, "detail": shown if value is not None else missing})
