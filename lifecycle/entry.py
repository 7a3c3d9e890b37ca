"""The ``zones`` console entry point: hand the command to a warm ``zones worker`` when ``DATAZONES_WORKER`` names
one (see :mod:`lifecycle.worker`), else run it here. Standard library only until the CLI is needed."""

from __future__ import annotations

import os
import sys


def main() -> None:
    path = os.environ.get("DATAZONES_WORKER")
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if path and command != "worker":
        from lifecycle.worker_client import delegate

        rc = delegate(path, sys.argv[1:])
        if rc is not None:
            sys.stdout.flush()
            raise SystemExit(rc)
    from lifecycle.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
