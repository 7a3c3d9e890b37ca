"""``zones`` — the command line. Heavy modules are imported inside commands so ``zones --help`` stays instant.

Exit codes: 0 ok · 1 a check found problems (validate, ledger verify) · 2 bad configuration · 3 transient (lock held,
retry) · 4 other terminal error (schema change, missing key, integrity).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from zones.errors import ConfigError, DatazonesError, TransientError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="datazones: hot → warm → cold data lifecycle.")
demo_app = typer.Typer(no_args_is_help=True, help="The synthetic demo agency (Skatteverket test numbers only).")
ledger_app = typer.Typer(no_args_is_help=True, help="The ledger: batches, watermarks, hash-chained events.")
app.add_typer(demo_app, name="demo")
app.add_typer(ledger_app, name="ledger")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

ConfigOpt = Annotated[str, typer.Option("--config", "-c", envvar="DATAZONES_CONFIG", help="Path to zones.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
AS_OF_FORM = "an ISO-8601 time with timezone, e.g. 2026-12-05T12:00:00+00:00 (without an offset it is taken as UTC)"


def _as_of(v: str | None) -> datetime | None:
    if v is None:
        return None
    try:
        d = datetime.fromisoformat(v)
    except ValueError as exc:
        raise typer.BadParameter(f"{v!r} is not a valid time ({exc}); use {AS_OF_FORM}",
                                 param_hint="'--as-of'") from None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _check_as_of(v: str | None) -> str | None:
    """Parse ``--as-of`` while the command line is read, so a bad value is a usage error (exit 2), not a crash."""
    _as_of(v)
    return v


AsOfOpt = Annotated[str | None, typer.Option("--as-of", callback=_check_as_of,
                                             help=f"The time the run acts as of (default: now): {AS_OF_FORM}.")]


def _guard(fn: Callable[[], T]) -> T:
    from rich.markup import escape  # a message's own brackets ("check [block] failed") are text, not markup

    try:
        return fn()
    except ConfigError as exc:
        err.print(f"[red]configuration error[/red]: {escape(str(exc))}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    except TransientError as exc:
        err.print(f"[yellow]transient[/yellow]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(3) from None
    except DatazonesError as exc:
        err.print(f"[red]{type(exc).__name__}[/red]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(4) from None


def _project(config: str) -> Any:
    from zones.config import load

    def checked() -> Any:
        project = load(config)
        project.check_urls()  # a bad hot or ledger URL is a configuration error (exit 2), before any command uses it
        return project

    return _guard(checked)


def _known_datasets(project: Any, names: list[str]) -> None:
    """Exit 2 naming the datasets zones.yaml does not declare, and the ones it does."""
    unknown = [n for n in names if n not in project.config.datasets]
    if unknown:
        err.print(f"unknown dataset(s) {unknown}; declared: {', '.join(project.config.datasets)}", highlight=False)
        raise typer.Exit(2)


def _emit(data: Any, as_json: bool, render: Callable[[], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")
    else:
        render()


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
          config: Annotated[str | None, typer.Option("--config", "-c", help="Path to zones.yaml for every command "
                                                     "(same as DATAZONES_CONFIG).")] = None) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if config:  # `zones --config X cmd`: the command's own --config reads DATAZONES_CONFIG when not given
        os.environ["DATAZONES_CONFIG"] = config


@app.command()
def validate(config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Check zones.yaml (schema, rules, every quality expectation against GX) and then the live hot store."""
    from quality.suites import check_specs
    from zones.validate import validate_live

    project = _project(config)
    _guard(lambda: check_specs(project))
    findings = _guard(lambda: validate_live(project))

    def render() -> None:
        for f in findings:
            out.print(str(f), highlight=False)
        if not any(f.level == "error" for f in findings):
            out.print(f"[green]ok[/green] {project.file}: {len(project.config.datasets)} datasets valid")

    _emit([f.__dict__ for f in findings], as_json, render)
    if any(f.level == "error" for f in findings):
        raise typer.Exit(1)


@app.command()
def promote(datasets: Annotated[list[str] | None, typer.Argument(help="Datasets to promote.")] = None,
            all_: Annotated[bool, typer.Option("--all", help="Every dataset in zones.yaml.")] = False,
            as_of: AsOfOpt = None, config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False,
            batch_rows: Annotated[int | None, typer.Option(help="Rows per batch (overrides config).")] = None,
            wait: Annotated[bool, typer.Option(help="Wait for another run's lock instead of exiting 3.")] = False,
            rebuild: Annotated[bool, typer.Option(help="Reload a warm table that went missing from hot (rows "
                                                  "archived or purged from hot do not come back).")] = False,
            ) -> None:
    """Promote hot → warm (incremental, exactly once)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lifecycle.promote import promote as run

    project = _project(config)
    names = list(project.config.datasets) if all_ else list(datasets or [])
    if not names:
        err.print("name one or more datasets, or --all")
        raise typer.Exit(2)
    unknown = [n for n in names if n not in project.config.datasets]
    if unknown:
        err.print(f"unknown dataset(s) {unknown}; declared: {', '.join(project.config.datasets)}")
        raise typer.Exit(2)
    reports = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,.0f} rows"),
                  TimeElapsedColumn(), console=err, disable=as_json or not err.is_terminal) as bar:
        for name in names:
            task = bar.add_task(f"promote {name}", total=None)

            def one(name: str = name, task: Any = task) -> Any:
                return run(project, name, as_of=_as_of(as_of), batch_rows=batch_rows, wait_for_lock=wait,
                           progress=lambda n: bar.advance(task, n), rebuild=rebuild)

            reports.append(_guard(one))

    def render() -> None:
        from rich.markup import escape

        t = Table(title="promote hot → warm")
        for c in ("dataset", "mode", "read", "written", "unchanged", "quarantined", "batches", "delta v", "seconds"):
            t.add_column(c, justify="right" if c not in ("dataset", "mode") else "left")
        for r in reports:
            t.add_row(r.dataset, r.mode, f"{r.rows_read:,}", f"{r.rows_written - r.rows_unchanged:,}",
                      f"{r.rows_unchanged:,}", f"{r.rows_quarantined:,}", str(r.batches), str(r.delta_version),
                      f"{r.timings.get('total', 0):.2f}")
        out.print(t)
        for r in reports:
            for w in r.warnings:
                err.print(f"[yellow]warning[/yellow] {r.dataset}: {escape(w)}", highlight=False)

    _emit([r.to_dict() for r in reports], as_json, render)


@app.command()
def status(config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Per dataset: hot rows, warm rows, watermark, last run, quarantined."""
    from lifecycle.status import dataset_status

    project = _project(config)
    rows = _guard(lambda: dataset_status(project))

    def render() -> None:
        t = Table(title=f"datazones status — {project.file}")
        for c in ("dataset", "hot rows", "warm rows", "quarantined", "watermark", "last run", "result"):
            t.add_column(c, justify="right" if "rows" in c or c == "quarantined" else "left")
        for r in rows:
            t.add_row(r["dataset"], f"{r['hot_rows']:,}" if r["hot_rows"] is not None else "—",
                      f"{r['warm_rows']:,}", f"{r['quarantined']:,}", r["watermark"] or "—",
                      r["last_run"] or "never", r["last_status"] or "")
        out.print(t)

    _emit(rows, as_json, render)


@app.command()
def worker(socket_path: Annotated[str | None, typer.Option(
        "--socket", envvar="DATAZONES_WORKER",
        help="Unix socket to listen on (default .datazones/worker.sock).")] = None,
           standby: Annotated[bool, typer.Option(
               help="Keep a forked child with Great Expectations warmed up for the next command.")] = True) -> None:
    """Serve commands warm: import everything once, fork a child per command (clients set DATAZONES_WORKER)."""
    from pathlib import Path

    from lifecycle.worker import serve

    def ready(path: Path, seconds: float) -> None:
        err.print(f"zones worker: ready on {path} (pid {os.getpid()}, loaded in {seconds:.1f} s); run commands with "
                  f"DATAZONES_WORKER={path}", highlight=False)

    serve(Path(socket_path or ".datazones/worker.sock").absolute(), ready=ready, standby=standby)


@ledger_app.command("verify")
def ledger_verify(config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Recompute the hash chain; exit 1 if any row was edited, inserted or deleted."""
    from lifecycle.ledger import Ledger
    from lifecycle.reconcile import reconcile

    project = _project(config)
    ledger = Ledger(project.ledger_url)
    problems = ledger.verify()
    tables = reconcile(ledger)  # watermarks, holds, packages and the disposal register against the log
    n = sum(1 for _ in ledger.events())

    def render() -> None:
        if not problems and not tables:
            out.print(f"[green]ledger intact[/green]: {n} events, chain verified; watermarks, holds, packages and "
                      "the disposal register agree with it")
        for p in problems:
            out.print(f"[red]seq {p.seq}[/red]: {p.problem}")
        for t in tables:
            out.print(f"[red]table[/red]: {t}")

    _emit({"events": n, "problems": [p.__dict__ for p in problems], "tables": tables}, as_json, render)
    if problems or tables:
        raise typer.Exit(1)


@demo_app.command("seed")
def demo_seed(scale: Annotated[int, typer.Option(help="≈ 1,000 people per unit.")] = 1, as_of: AsOfOpt = None,
              seed: int = 42, config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Create the demo hot tables and fill them with 13 years of synthetic data."""
    from lifecycle import demo
    from zones.hot import make_engine

    project = _project(config)
    engine = make_engine(project.hot_url)
    demo.create_schema(engine)
    counts = demo.seed(engine, scale=scale, as_of=_as_of(as_of), seed=seed)
    _emit(counts, as_json, lambda: out.print("seeded " + ", ".join(f"{k} {v:,}" for k, v in counts.items())))


@demo_app.command("churn")
def demo_churn(as_of: AsOfOpt = None, seed: int = 7, fraction: float = 0.02, config: ConfigOpt = "zones.yaml",
               as_json: JsonOpt = False) -> None:
    """Act like the operational system: advance cases, add decisions and payments, correct a few rows."""
    from lifecycle import demo
    from zones.hot import make_engine

    project = _project(config)
    counts = demo.churn(make_engine(project.hot_url), as_of=_as_of(as_of) or datetime.now(UTC), seed=seed,
                        fraction=fraction)
    _emit(counts, as_json, lambda: out.print("churned " + ", ".join(f"{k} {v:,}" for k, v in counts.items())))


@demo_app.command("query")
def demo_query(config: ConfigOpt = "zones.yaml") -> None:
    """A DuckDB query on the warm Delta tables — no datazones code involved in reading them."""
    from lifecycle.status import duckdb_demo_query

    project = _project(config)
    sql, table = duckdb_demo_query(project)
    out.print(f"[bold]DuckDB over warm Delta[/bold]\n{sql}")
    t = Table()
    for c in table.column_names:
        t.add_column(c)
    for row in table.to_pylist():
        t.add_row(*[str(v) for v in row.values()])
    out.print(t)


def build_once() -> None:
    """For a warm worker, before it forks: build the click command from ``app`` once (~21 ms that typer spends on
    every run) and let ``app()`` reuse it. Children run one command each, from a fresh copy."""
    import typer.main

    built = typer.main.get_command(app)
    build = typer.main.get_command

    def get_command(typer_instance: typer.Typer) -> Any:
        return built if typer_instance is app else build(typer_instance)

    typer.main.get_command = get_command


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code: int | str | None) -> None:
    """Exit; once Great Expectations is loaded, without tearing the interpreter down. Finalising GX's object graph
    costs ~1.3 s per run (a quarter of an incremental promote) and does nothing for us: every write is committed
    before this point, and the exit handlers (GX's DuckDB close, logging) still run first."""
    if "great_expectations" not in sys.modules:
        raise SystemExit(code)
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


from lifecycle import cli_cold as _cold  # noqa: E402,F401  (registers the cold-zone commands)
from lifecycle import cli_quality as _quality  # noqa: E402,F401  (registers quarantine and quality commands)

if __name__ == "__main__":  # `python -m lifecycle.cli`: run the imported module, where every command registered
    from lifecycle.cli import main as _registered_main

    _registered_main()
