"""`zones quarantine …` and `zones quality …`: work the quarantine, read gate results, build Data Docs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lifecycle.cli import ConfigOpt, JsonOpt, _emit, _guard, _known_datasets, _project, app, out

quarantine_app = typer.Typer(no_args_is_help=True, help="Rows the quality gate set aside: list, show, release.")
quality_app = typer.Typer(no_args_is_help=True, help="Quality gate results and Data Docs.")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(quality_app, name="quality")


@quarantine_app.command("list")
def quarantine_list(dataset: Annotated[str | None, typer.Argument(help="One dataset (default: all).")] = None,
                    config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Per dataset and batch: open and released rows, and why they failed (check names and counts)."""
    from lifecycle.release import summary

    project = _project(config)
    names = [dataset] if dataset else list(project.config.datasets)
    _known_datasets(project, names)
    rows = _guard(lambda: [e for n in names for e in summary(project, n)])

    def render() -> None:
        t = Table("dataset", "batch", "open", "released", "reasons")
        for e in rows:
            t.add_row(e["dataset"], e["batch_id"], str(e["open"]), str(e["released"]),
                      ", ".join(f"{k} ×{v}" for k, v in sorted(e["reasons"].items())))
        out.print(t if rows else "quarantine is empty")

    _emit(rows, as_json, render)


@quarantine_app.command("show")
def quarantine_show(dataset: str, batch: Annotated[str | None, typer.Option("--batch")] = None,
                    config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """The open rows: key (pseudonymised where the key is), batch, reasons. Values stay sealed."""
    from lifecycle.release import open_rows, require_batch

    project = _project(config)
    _known_datasets(project, [dataset])
    ds = project.dataset(dataset)
    if batch:
        _guard(lambda: require_batch(project, dataset, batch))
    t = _guard(lambda: open_rows(project, dataset, batch))
    cols = [*ds.primary_key, "_dz_batch", "_dz_reason", "_dz_at"]
    rows: list[dict[str, Any]] = t.select(cols).to_pylist() if t.num_rows else []

    def render() -> None:
        tab = Table(*cols)
        for r in rows:
            tab.add_row(*[str(r[c]) for c in cols])
        out.print(tab if rows else f"no open quarantined rows for {dataset}")

    _emit(rows, as_json, render)


@quarantine_app.command("release")
def quarantine_release(dataset: str, batch: Annotated[str, typer.Option("--batch", help="Batch id.")],
                       override: Annotated[bool, typer.Option(
                           "--override", help="Promote the originals as they are (needs --by and --reason).")] = False,
                       by: Annotated[str | None, typer.Option("--by", help="Who decides the override.")] = None,
                       reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the ledger).")] = None,
                       config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Re-validate a batch's rows against the current hot source and promote those that pass — or override."""
    from lifecycle.release import release

    project = _project(config)
    _known_datasets(project, [dataset])
    if override and not (by and reason):
        out.print("--override needs --by WHO and --reason WHY")
        raise typer.Exit(2)
    rep = _guard(lambda: release(project, dataset, batch, override_by=by if override else None,
                                 reason=reason if override else None))
    data = rep.__dict__

    def render() -> None:
        out.print(f"{dataset} {batch} ({rep.mode}): {rep.released} of {rep.rows} released, {rep.still_failing} "
                  f"still failing, {rep.gone_from_hot} no longer in hot"
                  + (f"; still failing: {rep.reasons}" if rep.reasons else ""))

    _emit(data, as_json, render)


@quality_app.command("results")
def quality_results(dataset: str, batch: Annotated[str | None, typer.Option("--batch")] = None,
                    config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Gate runs of a dataset (latest last); with --batch, every check of that run."""
    from lifecycle.ledger import Ledger

    project = _project(config)
    _known_datasets(project, [dataset])
    ledger = Ledger(project.ledger_url)
    try:
        runs = [{k: v for k, v in r.items() if k != "result_json"} for r in ledger.gate_runs(dataset)]
        checks = ledger.gate_results(batch) if batch else []
    finally:
        ledger.dispose()
    data: Any = checks if batch else runs

    def render() -> None:
        if batch:
            t = Table("check", "severity", "success", "unexpected", "of", "mostly", "blocking")
            for c in checks:
                t.add_row(c["check_name"], c["severity"], str(c["success"]), str(c["unexpected_count"]),
                          str(c["element_count"] if c["element_count"] is not None else ""),
                          str(c["mostly"] or ""), str(c["blocking"]))
        else:
            t = Table("batch", "suite", "success", "blocked", "rows", "quarantined", "at")
            for r in runs:
                t.add_row(r["batch_id"], r["suite"], str(r["success"]), str(r["blocked"]), str(r["rows"]),
                          str(r["rows_quarantined"]), str(r["at"]))
        out.print(t)

    _emit(data, as_json, render)


@quality_app.command("docs")
def quality_docs(out_dir: Annotated[Path | None, typer.Option("--out", help="Site folder.")] = None,
                 config: ConfigOpt = "zones.yaml") -> None:
    """Build GX Data Docs (a static site) from every stored gate run and print where index.html is."""
    from lifecycle.ledger import Ledger
    from quality.docs import build

    project = _project(config)
    ledger = Ledger(project.ledger_url)
    try:
        runs = ledger.gate_runs()
    finally:
        ledger.dispose()
    index = _guard(lambda: build(runs, out_dir or project.root / ".datazones" / "quality"))
    out.print(str(index))
