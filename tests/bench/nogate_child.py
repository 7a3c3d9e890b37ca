"""Bench child: the full promote with a pass-through gate instead of Great Expectations (the control of the
GX gate's cost: ``datazones-full`` minus this is what the gate adds to a run; with ``--preload``, by promote's
own time, the control of ``worker-full``). Prints the report as JSON.

usage: python -m tests.bench.nogate_child CONFIG AS_OF [--preload]
"""

from __future__ import annotations

import importlib
import json
import sys
from datetime import datetime

import pyarrow as pa

from lifecycle.promote import promote
from lifecycle.worker import PRELOAD, preload
from quality.gate import GateOutcome
from zones.config import load
from zones.model import Dataset


class PassGate:
    """Accepts every row, checks nothing (bench control only: the bench table is clean)."""

    def check(self, data: pa.Table, *, bad_type: pa.Array, dataset: Dataset) -> GateOutcome:
        return GateOutcome(data, data.slice(0, 0), pa.array([], pa.string()), [], suite="none")


def main() -> None:
    config, as_of = sys.argv[1], datetime.fromisoformat(sys.argv[2])
    if "--preload" in sys.argv[3:]:  # the control of worker-full: the worker's state (GX loaded, objects frozen)
        preload()
    else:
        for name in PRELOAD:  # imported before promote, as the CLI has them (its wall time is unchanged)
            importlib.import_module(name)
    report = promote(load(config), "utbetalning", as_of=as_of, gate=PassGate())
    sys.stdout.write(json.dumps([report.to_dict()], default=str) + "\n")


if __name__ == "__main__":
    main()
