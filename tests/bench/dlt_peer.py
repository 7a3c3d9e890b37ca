"""The dlt peer, run in its own process: ``python -m tests.bench.dlt_peer BACKEND TABLE WORKDIR``.

Exactly the setup of integration-notes.md ("The peer to beat"): ``sql_table`` (connectorx or pyarrow backend,
chunk_size 100 000) into a filesystem destination as a Delta table, write_disposition replace. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

SA_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CX_URL = "postgresql://postgres@127.0.0.1:5432/test"


def main(backend: str, table: str, work: str) -> None:
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt
    from dlt.sources.sql_database import sql_table

    src = sql_table(credentials=SA_URL, table=table, schema="bench", backend=backend,  # type: ignore[arg-type]
                    chunk_size=100_000, backend_kwargs={"conn": CX_URL} if backend == "connectorx" else {})
    pipe = dlt.pipeline(pipeline_name=f"bench_{backend}",  # type: ignore[call-overload]
                        destination=dlt.destinations.filesystem(bucket_url=f"file://{work}/out"),
                        dataset_name="warm", pipelines_dir=f"{work}/pipes", progress=None)
    t0 = time.perf_counter()
    pipe.run(src, table_format="delta", write_disposition="replace")
    secs = time.perf_counter() - t0
    trace = pipe.last_trace
    counts = dict(trace.last_normalize_info.row_counts) if trace and trace.last_normalize_info else {}
    print(json.dumps({"rows": counts.get(table), "seconds": round(secs, 3), "row_counts": counts,
                      "delta_path": f"{work}/out/warm/{table}"}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
