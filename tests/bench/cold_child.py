"""The cold-zone bench work, run in its own process: ``python -m tests.bench.cold_child WHAT ARGS...``. Prints one
JSON line (the parent measures wall time and peak RSS around the whole process).

    limit WARM_TABLE OUT_CSV      the warm rows as text → pyarrow CSV writer → file, sha256 over the same bytes
    archive ZONES_YAML AS_OF      lifecycle.archive.archive(execute=False, reference_validator=False)
    audit-limit COLD_DATASET_DIR  hashlib over every file of every bag: sha256 + the bag's manifest algorithms
    audit ZONES_YAML              lifecycle.cold_status.run_audit
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

CHUNK = 4 << 20


class _HashingSink(io.RawIOBase):
    """Write-through sink computing sha256 of what it writes (what lifecycle.fixity.HashingFile does)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fh = open(path, "wb")  # closed in close()
        self.hash, self.size = hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: ReadableBuffer) -> int:
        view = memoryview(b).cast("B")
        self.hash.update(view)
        self._fh.write(view)
        self.size += view.nbytes
        return view.nbytes

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def limit(warm_table: str, out_csv: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from deltalake import DeltaTable

    from lifecycle.transform import META_COLS, SEALED_SUFFIX

    t0 = time.perf_counter()
    dt = DeltaTable(warm_table)
    names = [f.name for f in dt.schema().fields if f.name not in META_COLS and not f.name.endswith(SEALED_SUFFIX)]
    table = dt.to_pyarrow_table(columns=names)
    t1 = time.perf_counter()
    table = pa.table({n: table.column(n).cast(pa.string()) for n in names})
    t2 = time.perf_counter()
    sink = _HashingSink(Path(out_csv))
    with sink:
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=True, quoting_style="all_valid", eol="\r\n"))
    t3 = time.perf_counter()
    return {"rows": table.num_rows, "columns": len(names), "bytes": sink.size, "sha256": sink.hash.hexdigest(),
            "timings": {"read": round(t1 - t0, 3), "cast": round(t2 - t1, 3), "write+hash": round(t3 - t2, 3)}}


def archive(zones_yaml: str, as_of: str) -> dict[str, Any]:
    from datetime import datetime

    from lifecycle.archive import archive as run_archive
    from lifecycle.cold_status import package_rows
    from lifecycle.ledger import Ledger
    from zones.config import load

    project = load(zones_yaml)
    report = run_archive(project, "utbetalning", as_of=datetime.fromisoformat(as_of), execute=False,
                         reference_validator=False)
    ledger = Ledger(project.ledger_url)
    try:
        pkgs = [{"package_id": p["package_id"], "period": p["period"], "rows": p["rows"], "bytes": p["bytes"],
                 "path": p["path"]} for p in package_rows(ledger, "utbetalning")]
    finally:
        ledger.dispose()
    return {"report": report.to_dict(), "packages": pkgs, "cold": project.zone_uri("cold")}


def _bag_algorithms(bag: Path) -> list[str]:
    """sha256 for every file (METS checksums) plus every algorithm the bag's manifests use: as verify_package."""
    algs = ["sha256"]
    for m in sorted(bag.glob("manifest-*.txt")):
        a = m.name.removeprefix("manifest-").removesuffix(".txt")
        if a not in algs:
            algs.append(a)
    return algs


def _hash(job: tuple[Path, str]) -> str:
    path, alg = job
    h, buf = hashlib.new(alg), bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def audit_limit(dataset_dir: str) -> dict[str, Any]:
    jobs: list[tuple[Path, str]] = []
    sizes: dict[Path, int] = {}
    bags = sorted(p for p in Path(dataset_dir).glob("*.bag") if p.is_dir())
    for bag in bags:
        algs = _bag_algorithms(bag)
        for p in (p for p in bag.rglob("*") if p.is_file()):
            sizes[p] = p.stat().st_size
            jobs += [(p, a) for a in algs]
    jobs.sort(key=lambda j: -sizes[j[0]])  # the largest first: the two threads finish together
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(_hash, jobs))
    secs = time.perf_counter() - t0
    return {"packages": len(bags), "files": len(sizes), "bytes": sum(sizes.values()), "hash_jobs": len(jobs),
            "timings": {"hash": round(secs, 3)}}


def audit(zones_yaml: str) -> dict[str, Any]:
    from lifecycle.cold_status import run_audit
    from zones.config import load

    t0 = time.perf_counter()
    results = run_audit(load(zones_yaml))
    secs = time.perf_counter() - t0
    return {"packages": len(results), "ok": sum(1 for r in results if r["ok"]),
            "files": sum(r["files"] for r in results), "bytes": sum(r["bytes"] for r in results),
            "problems": [p for r in results for p in r["problems"]][:10],
            "timings": {"verify": round(sum(r["seconds"] for r in results), 3), "total": round(secs, 3)}}


def main(argv: list[str]) -> None:
    what, *args = argv
    fns: dict[str, Callable[..., dict[str, Any]]] = {"limit": limit, "archive": archive, "audit-limit": audit_limit,
                                                     "audit": audit}
    out = fns[what](*args)
    sys.stdout.flush()
    os.write(1, (json.dumps(out, default=str) + "\n").encode())


if __name__ == "__main__":
    main(sys.argv[1:])
