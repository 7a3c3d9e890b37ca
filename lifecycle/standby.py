"""What a warm worker's standby child does before a command arrives.

``zones worker`` keeps one forked child in reserve (:mod:`lifecycle.worker`). It cannot make Great Expectations'
runner itself: the runner's DuckDB starts ~25 native threads, and a process with threads must not fork. The
standby is a child, so it may: while the worker is idle it makes the runner and validates a tiny batch
(:func:`quality.gx_warmup.warm_up`), and if the worker has seen a promotion it rehearses the gates of that promotion's
datasets on empty batches of their hot tables' schemas (:func:`lifecycle.promote.rehearse`). The next command
then finds GX ready — ~0.25 s of a small incremental run here — and runs exactly as in a fresh child: the
command's own environment, directory and streams replace the warm-up's before it starts.

The hint is the last promotion's arguments and directory, and only the environment needed to find its hot tables
(``DATAZONES__*`` overrides, ``PG*`` connection settings, locale, time zone and paths); the warm-up runs in that
environment (before any promotion, in the worker's own without anything else), so the pseudonymisation and seal
keys are not in the standby's environment until its command brings them. (Its memory is a copy of the worker's,
which received earlier commands' environments: the same process boundary as the worker itself.) Everything here
is best effort: a hint that no longer parses or connects costs nothing but the warm-up.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("datazones.worker")
_ENV_PREFIXES = ("DATAZONES__", "PG", "LC_")
_ENV_NAMES = ("DATAZONES_CONFIG", "PATH", "HOME", "USER", "LOGNAME", "TZ", "LANG", "TMPDIR", "PYTHONPATH",
              "VIRTUAL_ENV")
MAX_DATASETS = 32  # a --all promotion of a larger project rehearses the first 32


def hint(msg: dict[str, Any]) -> dict[str, Any] | None:
    """What a standby may warm up from a request: a promotion's arguments, directory and safe environment."""
    argv = [str(a) for a in msg.get("argv") or []]
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] != "promote":  # the standby parses the rest (the worker stays out of the CLI)
        return None
    env = _safe_env({k: str(v) for k, v in (msg.get("env") or {}).items()})
    return {"argv": argv, "cwd": str(msg.get("cwd") or "/"), "env": env}


def target(argv: list[str]) -> tuple[str, list[str], bool] | None:
    """``(config, datasets, all)`` of a ``zones promote`` command line, or None for any other command."""
    try:
        at = next(i for i, a in enumerate(argv) if not a.startswith("-"))
    except StopIteration:
        return None
    if argv[at] != "promote" or any(a not in ("-v", "--verbose") for a in argv[:at]):
        return None
    try:
        import typer

        from lifecycle.cli import app

        cmd = typer.main.get_command(app).commands["promote"]  # type: ignore[attr-defined]
        params = cmd.make_context("promote", list(argv[at + 1:]), resilient_parsing=True).params
    except Exception:  # a command line the CLI would refuse: the command itself will say so
        return None
    return str(params.get("config") or "zones.yaml"), list(params.get("datasets") or []), bool(params.get("all_"))


def _safe_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(_ENV_PREFIXES) or k in _ENV_NAMES}


def warm(last: dict[str, Any] | None) -> None:
    """Make GX's runner, then rehearse the gates of the promotion ``last`` names (see the module docstring).
    The environment is the hint's (or, before any promotion, the worker's own without its secrets) from the start,
    so GX's DuckDB takes its time zone (a command with another ``TZ`` gets a new runner: :mod:`lifecycle.worker`)."""
    import time

    env = last["env"] if last is not None else _safe_env(dict(os.environ))
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    if last is not None:
        os.chdir(last["cwd"])
    from quality.gx_warmup import warm_up

    seconds = warm_up()
    found = target(last["argv"]) if last is not None else None  # after the environment: --config may come from it
    if found is None:
        log.info("standby %d: GX warmed up in %.2f s", os.getpid(), seconds)
        return
    config, names, every = found
    from lifecycle.promote import rehearse
    from zones.config import load

    project = load(config)
    declared = list(project.config.datasets)
    chosen = (declared if every else [n for n in dict.fromkeys(names) if n in declared])[:MAX_DATASETS]
    rehearse(project, chosen)
    log.info("standby %d: GX warmed up in %.2f s; rehearsed the gates of %s", os.getpid(), seconds,
             ", ".join(chosen) or "no dataset")
