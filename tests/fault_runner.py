"""One promotion in a child process, for the fault-injection tests: python -m tests.fault_runner CFG DS AS_OF ROWS."""

from __future__ import annotations

import sys
from datetime import datetime

from lifecycle.promote import promote
from zones.config import load

if __name__ == "__main__":
    cfg, dataset, as_of, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rep = promote(load(cfg), dataset, as_of=datetime.fromisoformat(as_of), batch_rows=rows)
    print(rep.mode, rep.rows_read, rep.rows_written, rep.recovered_batches)
