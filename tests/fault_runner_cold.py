"""One cold-side transition in a child process, for the fault-injection tests.

python -m tests.fault_runner_cold CFG MODE DATASET AS_OF [PLAN]   (MODE: archive | purge | dispose)
"""

from __future__ import annotations

import sys
from datetime import datetime

from lifecycle import dispose
from lifecycle.archive import archive
from lifecycle.ledger import Ledger
from lifecycle.purge import purge
from zones.config import load

if __name__ == "__main__":
    cfg, mode, dataset, as_of = sys.argv[1], sys.argv[2], sys.argv[3], datetime.fromisoformat(sys.argv[4])
    project = load(cfg)
    if mode == "archive":
        archive(project, dataset, as_of=as_of, execute=True, reference_validator=False)
    elif mode == "purge":
        purge(project, dataset, as_of=as_of, execute=True, batch_size=200)
    else:
        dispose.execute(project, Ledger(project.ledger_url), sys.argv[5])
