"""`zones` commands for the cold side: archive, purge, holds, packages, verify, audit, dispose."""

from __future__ import annotations

import functools
import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lifecycle.cli import AsOfOpt, ConfigOpt, JsonOpt, _as_of, _emit, _guard, _known_datasets, _project, app, err, out

hold_app = typer.Typer(no_args_is_help=True, help="Legal holds: block every delete of what they cover.")
dispose_app = typer.Typer(no_args_is_help=True, help="Disposal (gallring): plan, approve (four eyes), execute.")
app.add_typer(hold_app, name="hold")
app.add_typer(dispose_app, name="dispose")
ExecuteOpt = Annotated[bool, typer.Option("--execute", help="Actually delete (default: plan only).")]


def _names(project: Any, datasets: list[str] | None, all_: bool) -> list[str]:
    names = list(project.config.datasets) if all_ else list(datasets or [])
    if not names:
        err.print(f"name datasets from: {', '.join(project.config.datasets)} (or --all)")
        raise typer.Exit(2)
    _known_datasets(project, names)
    return names


def _review_at(v: str | None) -> str | None:
    if v is not None:
        try:
            date.fromisoformat(v)
        except ValueError as exc:
            raise typer.BadParameter(f"{v!r} is not a date ({exc}); use an ISO-8601 date, e.g. 2027-06-30") from None
    return v


def _report_table(title: str, reports: list[Any]) -> None:
    t = Table(title=title)
    for c in ("dataset", "mode", "read", "written", "deleted", "packages", "checks", "seconds"):
        t.add_column(c)
    for r in reports:
        t.add_row(r.dataset, r.mode, f"{r.rows_read:,}", f"{r.rows_written:,}", f"{r.rows_deleted:,}",
                  str(len(r.batch_ids)), ", ".join(f"{k}={v}" for k, v in r.checks.items() if v),
                  f"{r.timings.get('total', 0):.2f}")
    out.print(t)


@app.command()
def archive(datasets: Annotated[list[str] | None, typer.Argument()] = None,
            all_: Annotated[bool, typer.Option("--all")] = False, as_of: AsOfOpt = None, execute: ExecuteOpt = False,
            by: Annotated[str, typer.Option(help="Operator recorded in PREMIS.")] = "datazones",
            config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Package due warm rows as E-ARK SIPs, verify them; with --execute delete them from warm."""
    from lifecycle.archive import archive as run

    project = _project(config)
    reports = [_guard(functools.partial(run, project, n, as_of=_as_of(as_of), execute=execute, operator=by))
               for n in _names(project, datasets, all_)]
    _emit([r.to_dict() for r in reports], as_json, lambda: _report_table("archive warm → cold", reports))


@app.command()
def purge(datasets: Annotated[list[str] | None, typer.Argument()] = None,
          all_: Annotated[bool, typer.Option("--all")] = False, as_of: AsOfOpt = None, execute: ExecuteOpt = False,
          config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Delete hot rows past `hot keep` whose identical version is verified in warm or cold."""
    from lifecycle.purge import purge as run

    project = _project(config)
    reports = [_guard(functools.partial(run, project, n, as_of=_as_of(as_of), execute=execute))
               for n in _names(project, datasets, all_)]
    _emit([r.to_dict() for r in reports], as_json, lambda: _report_table("purge hot", reports))


@hold_app.command("add")
def hold_add(dataset: Annotated[str, typer.Option("--dataset")], reason: Annotated[str, typer.Option("--reason")],
             by: Annotated[str, typer.Option("--by")], period: Annotated[str | None, typer.Option()] = None,
             case: Annotated[str | None, typer.Option("--case")] = None,
             person: Annotated[str | None, typer.Option("--person", help="Personnummer; stored pseudonymised.")] = None,
             review_at: Annotated[str | None, typer.Option("--review-at", callback=_review_at,
                                                           help="ISO date to review the hold, e.g. 2027-06-30.")
                                  ] = None,
             config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Put a legal hold on a dataset, a period, a case or a person."""
    from lifecycle import holds
    from lifecycle.ledger import Ledger

    project = _project(config)
    _known_datasets(project, [dataset])
    h = _guard(lambda: holds.add(project, Ledger(project.ledger_url), dataset=dataset, reason=reason, by=by,
                                 period=period, case=case, person=person,
                                 review_at=date.fromisoformat(review_at) if review_at else None))
    _emit(h.__dict__, as_json, lambda: out.print(f"hold [bold]{h.hold_id}[/bold] on {h.scope}: {h.reason}"))


@hold_app.command("list")
def hold_list(all_: Annotated[bool, typer.Option("--all", help="Include released holds.")] = False,
              config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """List holds."""
    from lifecycle import holds
    from lifecycle.ledger import Ledger

    project = _project(config)
    rows = holds.active(Ledger(project.ledger_url), include_released=all_)

    def render() -> None:
        t = Table(title="legal holds")
        for c in ("id", "scope", "reason", "set by", "set at", "review", "released"):
            t.add_column(c)
        for h in rows:
            t.add_row(h.hold_id, h.scope, h.reason, h.set_by, str(h.set_at)[:19], str(h.review_at or ""),
                      f"{h.released_at:%Y-%m-%d} by {h.released_by}" if h.released_at else "")
        out.print(t)

    _emit([h.__dict__ for h in rows], as_json, render)


@hold_app.command("release")
def hold_release(hold_id: str, by: Annotated[str, typer.Option("--by")], config: ConfigOpt = "zones.yaml") -> None:
    """Release a hold."""
    from lifecycle import holds
    from lifecycle.ledger import Ledger

    project = _project(config)
    h = _guard(lambda: holds.release(Ledger(project.ledger_url), hold_id, by=by))
    out.print(f"released {h.hold_id} ({h.scope})")


@app.command()
def packages(config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Archive packages with status: verified, held, due for disposal, disposed."""
    from lifecycle.cold_status import package_status

    project = _project(config)
    rows = _guard(lambda: package_status(project))

    def render() -> None:
        t = Table(title="cold zone packages")
        for c in ("package", "rows", "MB", "status", "rule", "dispose after", "secret until", "last audit"):
            t.add_column(c)
        for r in rows:
            t.add_row(r["package_id"], f"{r['rows']:,}", f"{r['bytes'] / 1e6:.1f}", r["state"], r["rule"],
                      r["dispose_after"] or "—", r["secrecy_until"], r["last_audit"])
        out.print(t)

    _emit(rows, as_json, render)


@app.command()
def verify(package: Annotated[str, typer.Argument(help="Package id or path (bag or package folder).")],
           config: ConfigOpt = "zones.yaml", out_dir: Annotated[str | None, typer.Option("--out")] = None,
           as_json: JsonOpt = False) -> None:
    """Verify a package and write the archivist's receipt (receipt.json, receipt.html)."""
    from lifecycle.cold_status import verify_and_receipt

    project = _project(config)
    receipt, ok, written = _guard(lambda: verify_and_receipt(project, package, Path(out_dir) if out_dir else None))
    _emit(json.loads(receipt.to_json()), as_json, lambda: out.print(receipt.to_text(), highlight=False, soft_wrap=True))
    err.print(f"receipt → {', '.join(str(p) for p in written)}")
    if not ok:
        raise typer.Exit(1)


@app.command()
def audit(all_: Annotated[bool, typer.Option("--all")] = True,
          sample: Annotated[int | None, typer.Option(help="Audit N random packages.")] = None,
          config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Recompute every checksum of every package (fixity), check the bags, record PREMIS fixity events."""
    from lifecycle.cold_status import run_audit

    project = _project(config)
    results = _guard(lambda: run_audit(project, sample=sample))

    def render() -> None:
        t = Table(title="fixity audit")
        for c in ("package", "files", "MB", "seconds", "result"):
            t.add_column(c)
        for r in results:
            t.add_row(r["package_id"], str(r["files"]), f"{r['bytes'] / 1e6:.1f}", f"{r['seconds']:.2f}",
                      "[green]ok[/green]" if r["ok"] else "[red]FAILED[/red]")
        out.print(t)
        for r in results:
            for p in r["problems"]:
                out.print(f"[red]{r['package_id']}[/red] {p['path']}: {p['problem']} expected={p['expected']} "
                          f"found={p['found']}", highlight=False)

    _emit(results, as_json, render)
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


@dispose_app.command("plan")
def dispose_plan(by: Annotated[str, typer.Option("--by")], as_of: AsOfOpt = None, config: ConfigOpt = "zones.yaml",
                 as_json: JsonOpt = False) -> None:
    """List packages whose disposal date has passed (rule, basis, counts, bytes, holds hit)."""
    from lifecycle import dispose
    from lifecycle.ledger import Ledger

    project = _project(config)
    plan = _guard(lambda: dispose.plan(project, Ledger(project.ledger_url), by=by, as_of=_as_of(as_of)))

    def render() -> None:
        t = Table(title=f"disposal plan {plan['plan_id']} by {by} — approve with `zones dispose approve "
                  f"{plan['plan_id']} --by OTHER`")
        for c in ("package", "rows", "MB", "basis", "due", "holds"):
            t.add_column(c)
        for e in plan["packages"]:
            t.add_row(e["package_id"], f"{e['rows']:,}", f"{e['bytes'] / 1e6:.1f}", e["basis"], e["dispose_after"],
                      ", ".join(e["holds"]) or "—")
        out.print(t)
        for k in plan.get("preserved_now", []):
            out.print(f"[yellow]not disposable now[/yellow] {k['package_id']}: {k['reason']}")

    _emit(plan, as_json, render)


@dispose_app.command("approve")
def dispose_approve(plan_id: str, by: Annotated[str, typer.Option("--by")], config: ConfigOpt = "zones.yaml") -> None:
    """Approve a disposal plan (must be another person than the planner)."""
    from lifecycle import dispose
    from lifecycle.ledger import Ledger

    project = _project(config)
    p = _guard(lambda: dispose.approve(Ledger(project.ledger_url), plan_id, by=by, project=project))
    out.print(f"plan {plan_id} approved by {p['approved_by']} (planned by {p['planned_by']})")


@dispose_app.command("execute")
def dispose_execute(plan_id: str, config: ConfigOpt = "zones.yaml", as_json: JsonOpt = False) -> None:
    """Dispose of an approved plan's unheld packages, writing the proof first."""
    from lifecycle import dispose
    from lifecycle.ledger import Ledger

    project = _project(config)
    done, refused = _guard(lambda: dispose.execute(project, Ledger(project.ledger_url), plan_id))

    def render() -> None:
        for d in done:
            out.print(f"disposed {d} (proof in the disposal register)")
        for r in refused:
            out.print(f"[yellow]refused[/yellow] {r.package_id}: {r.reason}")

    _emit({"disposed": done, "refused": [r.__dict__ for r in refused]}, as_json, render)
    if refused:
        raise typer.Exit(1)
