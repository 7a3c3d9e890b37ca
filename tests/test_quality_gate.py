"""The GX gate inside promotion: a corpus of bad batches, severities, quarantine release, Data Docs, config errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lifecycle.ledger import Ledger
from lifecycle.promote import GateBlocked, promote
from lifecycle.release import open_rows, release, summary
from lifecycle.warm import WarmTable
from quality.docs import build
from quality.suites import check_specs
from tests.conftest import REPO, write_project
from tests.test_promote import AS_OF, seeded_project
from zones.config import Project, load
from zones.errors import ConfigError
from zones.hot import make_engine

BAD_PNR = ("201701272394", "190302299813")  # bad check digit; 29 Feb 1903


def _sql(project: Project, *stmts: str) -> None:
    eng = make_engine(project.hot_url)
    with eng.begin() as c:
        if eng.dialect.name == "sqlite":
            c.execute(sa.text("PRAGMA foreign_keys=OFF"))
        for s in stmts:
            c.execute(sa.text(s))
    eng.dispose()


def _ids(project: Project, sql: str) -> list[int]:
    eng = make_engine(project.hot_url)
    with eng.connect() as c:
        out = [int(r[0]) for r in c.execute(sa.text(sql))]
    eng.dispose()
    return out


def _quarantined(project: Project, dataset: str) -> dict[str, str]:
    q = open_rows(project, dataset)
    key = project.dataset(dataset).primary_key[0]
    return dict(zip(q.column(key).to_pylist(), q.column("_dz_reason").to_pylist(), strict=True)) if q.num_rows else {}


def _warm_keys(project: Project, dataset: str) -> set[str]:
    key = project.dataset(dataset).primary_key[0]
    return {str(v) for v in WarmTable(project.warm_table_uri(dataset)).to_arrow(columns=[key]).column(key).to_pylist()}


def test_bad_batch_corpus_lands_where_its_severity_says_and_nothing_is_lost(backend: dict[str, str],
                                                                            tmp_path: Path) -> None:
    project = seeded_project(backend, tmp_path, datasets=["individ", "arende", "beslut", "utbetalning"])
    ind = _ids(project, "SELECT individ_id FROM individ ORDER BY individ_id LIMIT 5")
    utb = _ids(project, "SELECT utbetalning_id FROM utbetalning ORDER BY utbetalning_id LIMIT 6")
    ar = _ids(project, "SELECT arende_id FROM arende ORDER BY arende_id LIMIT 1")
    bes = _ids(project, "SELECT beslut_id FROM beslut ORDER BY beslut_id LIMIT 1")
    pnr_dup = _ids(project, f"SELECT personnummer FROM individ WHERE individ_id = {ind[4]}")[0]
    stmts = [
        f"UPDATE individ SET personnummer = '{BAD_PNR[0]}' WHERE individ_id = {ind[0]}",
        f"UPDATE individ SET personnummer = '{BAD_PNR[1]}' WHERE individ_id = {ind[1]}",
        f"UPDATE individ SET personnummer = '191500722390', id_typ = 'SAMNR' WHERE individ_id = {ind[2]}",  # valid
        f"UPDATE individ SET personnummer = '{pnr_dup:012d}' WHERE individ_id = {ind[3]}",  # duplicate number
        f"UPDATE utbetalning SET brutto_sek = -100, netto_sek = -100 - skatt_sek WHERE utbetalning_id = {utb[0]}",
        f"UPDATE utbetalning SET netto_sek = netto_sek + 1 WHERE utbetalning_id = {utb[1]}",
        f"UPDATE utbetalning SET status = 'OKÄND' WHERE utbetalning_id = {utb[2]}",
        f"UPDATE arende SET inkommit = '2999-01-01' WHERE arende_id = {ar[0]}",  # a future date
        f"UPDATE beslut SET motivering = '{'Ölänning 🙂 ' * 9000}' WHERE beslut_id = {bes[0]}",  # passes: dropped
    ]
    if backend["name"] == "sqlite":  # SQLite lets a wrong type through; PostgreSQL refuses it at the source
        stmts.append(f"UPDATE utbetalning SET skatt_sek = 'tolv' WHERE utbetalning_id = {utb[3]}")
    _sql(project, *stmts)
    for name in ("individ", "arende", "beslut", "utbetalning"):
        rep = promote(project, name, as_of=AS_OF)
        assert rep.rows_read == rep.rows_written + rep.rows_quarantined, name
        hot_n = _ids(project, f"SELECT count(*) FROM {name}")[0]
        assert rep.rows_read == hot_n and len(_warm_keys(project, name)) == rep.rows_written
        assert len(_quarantined(project, name)) == rep.rows_quarantined
    q = _quarantined(project, "utbetalning")
    assert q[str(utb[0])] == "column_values_to_be_between(brutto_sek)"
    assert q[str(utb[1])] == "netto_to_equal_brutto_minus_skatt(netto_sek,brutto_sek,skatt_sek)"
    assert q[str(utb[2])] == "column_values_to_be_in_set(status)"
    if backend["name"] == "sqlite":
        assert "wrong_type" in q[str(utb[3])]
    assert not {str(u) for u in utb[:3]} & _warm_keys(project, "utbetalning")
    assert list(_quarantined(project, "arende").values()) == ["column_values_to_be_between(inkommit)"]
    assert _quarantined(project, "beslut") == {}
    reasons = sorted(_quarantined(project, "individ").values())  # keys are pseudonymised there
    assert reasons.count("column_values_to_be_valid_personnummer(personnummer)") == 2
    assert reasons.count("column_values_to_be_unique(personnummer)") == 2  # both holders of the duplicate
    assert len(reasons) == 4  # the samordningsnummer with month 00 passed
    ledger = Ledger(project.ledger_url)
    runs = ledger.gate_runs("utbetalning")
    assert runs and runs[0]["suite"] == "utbetalning.promote" and runs[0]["rows_quarantined"] >= 3
    checks = {c["check_name"]: c for c in ledger.gate_results(runs[0]["batch_id"])}
    assert checks["column_values_to_be_between(brutto_sek)"]["unexpected_count"] == 1
    assert checks["column_values_to_be_in_type_list(brutto_sek)"]["success"] is True
    stored = json.dumps([r["result_json"] for r in ledger.gate_runs()])
    ledger.dispose()
    assert not any(p in stored for p in (*BAD_PNR, "191500722390", "Ölänning", "OKÄND"))


def _edit_utbetalning(sev: str, mostly: float | None = None) -> Any:
    def edit(raw: dict[str, Any]) -> None:
        kw: dict[str, Any] = {"column": "brutto_sek", "min_value": 0}
        if mostly is not None:
            kw["mostly"] = mostly
        raw["datasets"]["utbetalning"]["quality"]["expectations"].append(
            {"expect_column_values_to_be_between": kw, "severity": sev})
        raw["datasets"]["utbetalning"]["columns"]["brutto_sek"].pop("min", None)
    return edit


def _project(tmp_path: Path, edit: Any) -> Project:
    from lifecycle import demo

    path = write_project(tmp_path, hot_url=f"sqlite:///{tmp_path}/hot.db", ledger_url=f"sqlite:///{tmp_path}/l.db",
                         datasets=["utbetalning"], edit=edit)
    project = load(path, env={})
    eng = make_engine(project.hot_url)
    demo.create_schema(eng)
    demo.seed(eng, scale=1, as_of=AS_OF, seed=42)
    eng.dispose()
    return project


def test_block_stops_the_run_with_delta_unchanged_and_the_ledger_saying_why(tmp_path: Path) -> None:
    project = _project(tmp_path, _edit_utbetalning("block"))
    first = promote(project, "utbetalning", as_of=AS_OF, batch_rows=2000)
    version = WarmTable(project.warm_table_uri("utbetalning")).version()
    bad = _ids(project, "SELECT utbetalning_id FROM utbetalning ORDER BY utbetalning_id DESC LIMIT 2")
    _sql(project, f"UPDATE utbetalning SET brutto_sek = -1, netto_sek = -1 - skatt_sek, "
                  f"andrad = '2026-01-02 00:00:00.000000' WHERE utbetalning_id IN ({bad[0]}, {bad[1]})")
    later = AS_OF.replace(day=3)
    with pytest.raises(GateBlocked, match=r"be_between\(brutto_sek\) \[block\] failed 2 of \d+ rows"):
        promote(project, "utbetalning", as_of=later)
    assert WarmTable(project.warm_table_uri("utbetalning")).version() == version
    ledger = Ledger(project.ledger_url)
    last = ledger.last_batch("utbetalning")
    assert last is not None and last["status"] == "blocked"
    assert ledger.watermark("utbetalning") == first.watermark_to
    blocked = [c for c in ledger.gate_results(last["batch_id"]) if c["blocking"]]
    assert [(c["check_name"], c["unexpected_count"]) for c in blocked] == [
        ("column_values_to_be_between(brutto_sek)", 2)]
    assert any(e["kind"] == "quality.blocked" for e in ledger.events(dataset="utbetalning"))
    assert ledger.verify() == []
    ledger.dispose()


def test_warn_commits_and_records(tmp_path: Path) -> None:
    project = _project(tmp_path, _edit_utbetalning("warn"))
    bad = _ids(project, "SELECT utbetalning_id FROM utbetalning ORDER BY utbetalning_id LIMIT 1")[0]
    _sql(project, f"UPDATE utbetalning SET brutto_sek = -1, netto_sek = -1 - skatt_sek WHERE utbetalning_id = {bad}")
    rep = promote(project, "utbetalning", as_of=AS_OF)
    assert rep.rows_quarantined == 0 and str(bad) in _warm_keys(project, "utbetalning")
    assert rep.warnings == ["column_values_to_be_between(brutto_sek)"]
    assert rep.timings["gate_load"] >= 0 and rep.timings["gate"] > 0  # the one-off GX load is timed apart


def test_release_revalidates_after_the_source_is_fixed_and_override_records_who_and_why(tmp_path: Path) -> None:
    project = _project(tmp_path, None)
    ids = _ids(project, "SELECT utbetalning_id FROM utbetalning ORDER BY utbetalning_id LIMIT 2")
    _sql(project, f"UPDATE utbetalning SET netto_sek = netto_sek + 5 WHERE utbetalning_id IN ({ids[0]}, {ids[1]})")
    rep = promote(project, "utbetalning", as_of=AS_OF)
    assert rep.rows_quarantined == 2
    batch = summary(project, "utbetalning")[0]["batch_id"]
    still = release(project, "utbetalning", batch)  # nothing fixed yet: both still fail
    assert (still.released, still.still_failing) == (0, 2)
    _sql(project, f"UPDATE utbetalning SET netto_sek = netto_sek - 5 WHERE utbetalning_id = {ids[0]}")
    fixed = release(project, "utbetalning", batch)
    assert (fixed.mode, fixed.released, fixed.still_failing) == ("revalidated", 1, 1)
    assert str(ids[0]) in _warm_keys(project, "utbetalning")
    over = release(project, "utbetalning", batch, override_by="anna.steward", reason="rounding agreed, case 2026-17")
    assert (over.mode, over.released) == ("override", 1)
    warm = _warm_keys(project, "utbetalning")
    assert {str(ids[0]), str(ids[1])} <= warm and len(warm) == rep.rows_read
    after = summary(project, "utbetalning")[0]
    assert (after["open"], after["released"], after["reasons"]) == (0, 2, {})
    ledger = Ledger(project.ledger_url)
    ev = [e["payload"] for e in ledger.events(kind="quarantine.released")]
    ledger.dispose()
    assert ev[-1]["by"] == "anna.steward" and ev[-1]["reason"] == "rounding agreed, case 2026-17"
    assert release(project, "utbetalning", batch).rows == 0  # nothing left to release


def test_data_docs_site_is_built_from_the_ledger_without_values(tmp_path: Path) -> None:
    project = _project(tmp_path, None)
    _sql(project, "UPDATE utbetalning SET status = 'HEMLIG' WHERE utbetalning_id = "
                  "(SELECT min(utbetalning_id) FROM utbetalning)")
    promote(project, "utbetalning", as_of=AS_OF)
    ledger = Ledger(project.ledger_url)
    index = build(ledger.gate_runs(), tmp_path / "docs")
    ledger.dispose()
    assert index.name == "index.html" and index.is_file()
    site = "".join(p.read_text(errors="ignore") for p in index.parent.rglob("*.html"))
    assert "utbetalning.promote" in site and "HEMLIG" not in site
    cli = subprocess.run([sys.executable, "-m", "lifecycle.cli", "quality", "docs", "--config", str(project.file),
                          "--out", str(tmp_path / "cli-docs")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and cli.stdout.strip().endswith("index.html"), cli.stderr[-800:]
    assert "Exception" not in cli.stderr and "netto_to_equal_brutto_minus_skatt" in "".join(
        p.read_text(errors="ignore") for p in (tmp_path / "cli-docs").rglob("*.html"))


@pytest.mark.parametrize("entry, message", [
    ({"expect_column_values_to_be_betwen": {"column": "brutto_sek"}},
     "did you mean 'expect_column_values_to_be_between'"),
    ({"expect_column_values_to_be_between": {"column": "brutto_sek", "min_value": "noll"}}, "invalid arguments"),
    ({"expect_column_values_to_be_between": {"column": "brutto", "min_value": 0}},
     "column 'brutto' is not declared"),
    ({"expect_table_row_count_to_be_between": {"min_value": 1}, "severity": "quarantine"},
     "failing rows cannot be quarantined"),
])
def test_extra_expectations_are_checked_before_anything_runs(tmp_path: Path, entry: dict[str, Any],
                                                             message: str) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["datasets"]["utbetalning"]["quality"]["expectations"].append(entry)

    path = write_project(tmp_path, datasets=["utbetalning"], edit=edit)
    project = load(path, env={})  # loading stays cheap (no GX); the suite is checked by validate and promote
    with pytest.raises(ConfigError) as e:
        check_specs(project)
    text = str(e.value)
    assert message in text and "zones.yaml:" in text and "datasets.utbetalning.quality.expectations.2" in text


def test_gx_is_not_imported_by_the_cli_or_a_config_load() -> None:
    code = ("import sys, lifecycle.cli, lifecycle.promote, zones.config; zones.config.load('zones.yaml'); "
            "print('great_expectations' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr[-500:]


def test_archive_precheck_suite_records_its_run_and_blocks_on_a_count_mismatch(tmp_path: Path) -> None:
    import pyarrow as pa

    from lifecycle.archive_steps import precheck
    from zones.errors import IntegrityError

    project = _project(tmp_path, None)
    ds = project.dataset("utbetalning")
    record = pa.table({"utbetalning_id": ["1", "2", "3"], "belopp": ["1", "2", "3"]})
    ledger = Ledger(project.ledger_url)
    precheck("utbetalning", ds, "2025", record, 3, ledger)
    with pytest.raises(IntegrityError, match=r"table_row_count_to_equal \[block\] failed"):
        precheck("utbetalning", ds, "2024", record, 4, ledger)
    runs = {r["batch_id"]: r for r in ledger.gate_runs("utbetalning")}
    ledger.dispose()
    assert runs["utbetalning-2025-archive-precheck"]["success"] is True
    assert runs["utbetalning-2024-archive-precheck"]["blocked"] is True
    assert runs["utbetalning-2024-archive-precheck"]["suite"] == "utbetalning.archive"


def test_promote_refuses_a_bad_expectation_before_writing(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["datasets"]["utbetalning"]["quality"]["expectations"].append(
            {"expect_column_values_to_be_betwen": {"column": "brutto_sek", "min_value": 0}})

    project = _project(tmp_path, edit)
    with pytest.raises(ConfigError, match="unknown expectation"):
        promote(project, "utbetalning", as_of=AS_OF)
    assert not WarmTable(project.warm_table_uri("utbetalning")).exists()


def test_hoisted_kwargs_getters_equal_gx_own_on_every_demo_expectation() -> None:
    """Fix 6 of quality/gx.py replaces three GX methods: same results as GX's on every expectation we run."""
    from datetime import date

    from great_expectations.expectations.expectation import Expectation

    from quality.gx import make_expectation, runner
    from quality.suites import promote_suite

    runner()  # imports GX and installs the fix
    project = load(REPO / "zones.yaml")
    gx_domain, gx_success, gx_runtime = Expectation._gx_kwargs_getters  # type: ignore[attr-defined]
    seen = set()
    for name in project.config.datasets:
        for spec in promote_suite(name, project.dataset(name)).specs:
            exp = make_expectation(spec, date(2026, 11, 22), dz=0, severity=spec.severity)
            seen.add(spec.type)
            assert exp._get_domain_kwargs() == gx_domain(exp)
            assert exp._get_success_kwargs() == gx_success(exp)
            for runtime in (None, {"result_format": "COMPLETE"},
                            {"result_format": {"result_format": "SUMMARY", "partial_unexpected_count": 0}}):
                assert exp._get_runtime_kwargs(runtime) == gx_runtime(exp, runtime)
    assert len(seen) >= 8  # the demo suites use many expectation types: the comparison covers them


def _utbetalning_page(start: int, bad: bool) -> Any:
    import datetime as dt

    import pyarrow as pa

    n = 40
    ids = list(range(start, start + n))
    brutto = [1000 + i for i in ids]
    skatt = [300] * n
    netto = [b - 300 for b in brutto]
    status = ["UTBETALD"] * n
    andrad: list[Any] = [dt.datetime(2025, 1, 1, tzinfo=dt.UTC)] * n
    avser_from = [dt.date(2025, 1, 1)] * n
    if bad:  # one failure of each kind, on different rows
        brutto[1], netto[1] = -5, -305
        netto[2] += 1
        status[3] = "OKAND"
        andrad[4] = None
        ids[6] = ids[5]
        avser_from[7] = dt.date(2025, 3, 1)
    return pa.table({"utbetalning_id": ids, "beslut_id": ids, "individ_id": ids, "utbetald": [dt.date(2025, 1, 5)] * n,
                     "avser_from": avser_from, "avser_tom": [dt.date(2025, 1, 31)] * n, "brutto_sek": brutto,
                     "skatt_sek": skatt, "netto_sek": netto, "konto": ["30001234567"] * n, "status": status,
                     "andrad": pa.array(andrad, pa.timestamp("us", tz="UTC"))})


def _keys_page(start: int) -> Any:
    """A page whose keys have nulls, a pair and a triplicate (the unique check's edge cases)."""
    import pyarrow as pa

    t = _utbetalning_page(start, False)
    ids: list[int | None] = t.column("utbetalning_id").to_pylist()
    ids[0] = ids[1] = None
    ids[3] = ids[2]
    ids[10] = ids[11] = ids[9]
    return t.set_column(0, "utbetalning_id", pa.array(ids, pa.int64()))


def test_memoised_dependency_graphs_give_gx_own_results_page_by_page() -> None:
    """Fixes 7, 8 and 9 of quality/gx.py build each suite's metric graph once per run, leave out the metric that
    fetches failing raw values and count repeated values by aggregate instead of window: every page's verdicts,
    counts, quarantined rows and stored result must equal those of GX on its own."""
    import pyarrow as pa

    from quality.gx import runner
    from quality.gx_gate import GXGate

    ds = load(REPO / "zones.yaml").dataset("utbetalning")
    pages = [_utbetalning_page(1, False), _utbetalning_page(41, True), _utbetalning_page(81, False),
             _utbetalning_page(121, True), _keys_page(161)]
    r = runner()
    seen: list[list[Any]] = []
    try:
        for memoise in (True, False):
            r.memoise = r.skip_values = r.fast_unique = memoise
            gate = GXGate("memo", ds)
            out = []
            for t in pages:
                o = gate.check(t, bad_type=pa.array([False] * t.num_rows), dataset=ds)
                assert o.result is not None
                stored = {k: o.result[k] for k in ("success", "statistics", "results")}  # not the run's time
                keys = sorted(o.rejected.column("utbetalning_id").to_pylist(), key=lambda k: (k is None, k or 0))
                out.append((o.checks, keys,
                            o.reasons.to_pylist(), json.dumps(stored, sort_keys=True, default=str)))
            seen.append(out)
            if memoise:  # one graph for the suite, one per set of failed checks re-run for quarantine (2 sets)
                assert len(r._graphs[gate.table]) == 3
    finally:
        r.memoise = r.skip_values = r.fast_unique = True
    assert seen[0] == seen[1]
    bad = seen[0][1]
    assert bad[1] == [42, 43, 44, 45, 46, 46, 48]  # the failing rows of page 2 went to quarantine
    assert seen[0][0][1] == [] and seen[0][2][1] == []  # the clean pages after a bad one stay clean
    keys = {c.name: c.failed for c in seen[0][4][0]}
    assert keys["column_values_to_be_unique(utbetalning_id)"] == 5  # a pair and a triplicate; nulls are not repeats
    assert keys["column_values_to_not_be_null(utbetalning_id)"] == 2
    assert seen[0][4][1] == [163, 163, 170, 170, 170, None, None]


def test_a_rehearsed_gate_starts_with_its_graph_built_and_judges_as_gx_does() -> None:
    """``prepare(schema=...)`` rehearses the suite on an empty batch in the loader thread (a warm worker's small
    incremental run then finds GX's graph, reflection and compiled queries ready): the first page must reuse that
    graph, and every page's verdicts, quarantined rows and stored result must equal an unrehearsed gate's."""
    import pyarrow as pa

    from quality.gx import runner
    from quality.gx_gate import GXGate

    ds = load(REPO / "zones.yaml").dataset("utbetalning")
    pages = [_utbetalning_page(1, True), _utbetalning_page(41, False), _keys_page(81)]
    r = runner()

    def judge(gate: GXGate) -> list[Any]:
        out = []
        for t in pages:
            o = gate.check(t, bad_type=pa.array([False] * t.num_rows), dataset=ds)
            assert o.result is not None
            stored = {k: o.result[k] for k in ("success", "statistics", "results")}
            out.append((o.checks, o.rejected.column("utbetalning_id").to_pylist(), o.reasons.to_pylist(),
                        json.dumps(stored, sort_keys=True, default=str)))
        return out

    plain = judge(GXGate("plain", ds))
    rehearsed = GXGate("rehearsed", ds)
    rehearsed.prepare(None, schema=pages[0].schema)
    rehearsed.ready()
    built = dict(r._graphs.get(rehearsed.table, {}))
    assert len(built) == 1  # the suite's graph, built before any row arrived
    first = rehearsed.check(pages[1], bad_type=pa.array([False] * 40), dataset=ds)  # a clean page: no re-run
    assert first.rejected.num_rows == 0 and dict(r._graphs[rehearsed.table]) == built  # the memo served it
    got = judge(rehearsed)  # the gates' names (in batch ids and origins) are all that may differ
    assert repr(got).replace("rehearsed", "plain") == repr(plain) and "rehearsed" in repr(got)
    assert plain[0][1] == [2, 3, 4, 5, 6, 6, 8]


def test_every_failing_row_is_quarantined_not_only_the_first_twenty_gx_lists() -> None:
    """GX's SQL row lists stop at ``partial_unexpected_count`` (20 unless told): with more failing rows than that
    per check, every one of them must still go to quarantine, and nothing failing may reach warm."""
    import datetime as dt

    import pyarrow as pa

    from quality.gx_gate import GXGate

    ds = load(REPO / "zones.yaml").dataset("utbetalning")
    t = pa.concat_tables([_utbetalning_page(1 + 40 * k, False) for k in range(10)])  # 400 clean rows
    cols = {c: t.column(c).to_pylist() for c in t.column_names}
    want: dict[str, set[int]] = {}
    for i in range(0, 400, 8):  # 50 negative amounts (netto follows: only the amount check fails)
        cols["brutto_sek"][i], cols["netto_sek"][i] = -5, -305
        want.setdefault("column_values_to_be_between(brutto_sek)", set()).add(i)
    for i in range(1, 400, 12):  # 34 netto mismatches
        cols["netto_sek"][i] += 1
        want.setdefault("netto_to_equal_brutto_minus_skatt(netto_sek,brutto_sek,skatt_sek)", set()).add(i)
    for i in range(2, 400, 15):  # 27 unknown statuses
        cols["status"][i] = "OKAND"
        want.setdefault("column_values_to_be_in_set(status)", set()).add(i)
    for i in range(3, 400, 16):  # 25 periods ending before they start
        cols["avser_from"][i] = dt.date(2025, 3, 1)
        want.setdefault("period_to_be_ordered(avser_from,avser_tom)", set()).add(i)
    for i in range(5, 400, 20):  # 20 pairs of repeated keys: 40 rows
        cols["utbetalning_id"][i + 1] = cols["utbetalning_id"][i]
        want.setdefault("column_values_to_be_unique(utbetalning_id)", set()).update({i, i + 1})
    page = pa.table({c: pa.array(v, t.schema.field(c).type) for c, v in cols.items()})
    out = GXGate("many", ds).check(page, bad_type=pa.array([False] * 400), dataset=ds)
    failed = {c.name: c.failed for c in out.checks if c.failed}
    assert failed == {name: len(rows) for name, rows in want.items()}
    assert not out.blocked and all(c.error is None for c in out.checks)
    bad = set().union(*want.values())
    ids = page.column("utbetalning_id").to_pylist()
    assert out.rejected.num_rows == len(bad) and out.passed.num_rows == 400 - len(bad)
    assert sorted(out.rejected.column("utbetalning_id").to_pylist()) == sorted(ids[i] for i in bad)
    reasons = dict(zip(out.rejected.column("brutto_sek").to_pylist(), out.reasons.to_pylist(), strict=False))
    assert "column_values_to_be_between(brutto_sek)" in reasons[-5]


def test_a_check_gx_cannot_evaluate_blocks_and_its_message_carries_no_values() -> None:
    """When a metric fails (a renamed column, a value the database cannot compare), GX reports it per metric,
    not as the expectation's exception: the check must still count as an error and block the batch, even at
    quarantine severity, and the stored message names the column but never a value from the batch."""
    import datetime as dt

    import pyarrow as pa

    from quality.gx_gate import GXGate
    from quality.suites import Spec, SuiteSpec

    ds = load(REPO / "zones.yaml").dataset("utbetalning")
    suite = SuiteSpec("errors.promote", [
        Spec("expect_column_values_to_be_between", {"column": "belopp", "min_value": 0}, "quarantine"),
        Spec("expect_column_values_to_be_in_set", {"column": "pnr", "value_set": [dt.date(2025, 1, 1)]}, "warn")])
    page = pa.table({"belopp_sek": [1, 2], "pnr": ["2025-01-01", "191212121212"]})
    out = GXGate("errors", ds, suite=suite).check(page, bad_type=pa.array([False, False]), dataset=ds)
    assert out.blocked and out.passed.num_rows == 2 and out.rejected.num_rows == 0
    errors = {c.name: c.error for c in out.checks if c.name != "wrong_type"}
    assert all(errors.values()) and all(c.blocking for c in out.checks if c.name in errors)
    assert '"belopp"' in errors["column_values_to_be_between(belopp)"]
    stored = json.dumps(out.result, default=str)
    summary = out.blocking_summary()  # the run's terminal error
    assert "belopp" in summary and "pnr" in summary
    for text in (stored, *map(str, errors.values()), summary):
        assert "1212121212" not in text
    infos = [r["exception_info"] for r in out.result["results"]]
    assert all(set(i) == {"raised_exception", "exception_message", "exception_traceback"} for i in infos)
    assert all(i["raised_exception"] and i["exception_traceback"] is None for i in infos)


def test_a_check_duckdb_cannot_run_does_not_mask_the_others() -> None:
    """Fix 11: one check whose query DuckDB refuses (a date compared with text) used to abort the transaction, so
    every check of the batch reported "transaction is aborted". Now the check at fault carries its own error (no
    value in it) and blocks, and the others are judged: their counts and rows are GX's as without it."""
    import datetime as dt

    import pyarrow as pa

    from quality.gx_gate import GXGate
    from quality.suites import Spec, SuiteSpec

    ds = load(REPO / "zones.yaml").dataset("utbetalning")
    good = [Spec("expect_column_values_to_not_be_null", {"column": "belopp_sek"}, "quarantine"),
            Spec("expect_column_values_to_be_between", {"column": "belopp_sek", "min_value": 0}, "quarantine"),
            Spec("expect_column_values_to_be_unique", {"column": "belopp_sek"}, "warn")]
    bad = Spec("expect_column_values_to_be_in_set", {"column": "pnr", "value_set": [dt.date(2025, 1, 1)]}, "warn")
    page = pa.table({"belopp_sek": [1, None, -3, 1], "pnr": ["2025-01-01", "191212121212", "x", "y"]})
    no = pa.array([False] * 4)
    alone = GXGate("masked", ds, suite=SuiteSpec("masked.promote", good)).check(page, bad_type=no, dataset=ds)
    out = GXGate("masked", ds, suite=SuiteSpec("masked.promote", [good[0], bad, *good[1:]])).check(
        page, bad_type=no, dataset=ds)
    judged = {c.name: (c.failed, c.success, c.error) for c in out.checks if c.name != bad.name}
    assert judged == {c.name: (c.failed, c.success, c.error) for c in alone.checks}
    assert judged["column_values_to_be_unique(belopp_sek)"][:2] == (2, False)
    assert out.rejected.num_rows == alone.rejected.num_rows == 2
    err = next(c.error for c in out.checks if c.name == bad.name)
    assert err and "Conversion Error" in err and "aborted" not in err and "2025-01-01" not in err
    assert out.blocked and not alone.blocked


def test_a_discarded_runner_is_made_anew_and_judges_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's standby discards a runner made under another TZ than its command's (its DuckDB keeps the time
    zone it was made in): the next runner is a new one, in the new zone, with the same verdicts."""
    import pyarrow as pa

    from quality.gx import discard_runner, runner
    from quality.gx_gate import GXGate
    from quality.gx_warmup import warm_up

    ds = load(REPO / "zones.yaml").dataset("utbetalning")
    page = pa.table({"utbetalning_id": [1, 2, 2], "netto_sek": [1, 2, 3]})

    def verdicts() -> dict[str, int]:
        out = GXGate("anew", ds).check(page, bad_type=pa.array([False] * 3), dataset=ds)
        return {c.name: c.failed for c in out.checks}

    warm_up()
    first, before = runner(), verdicts()
    monkeypatch.setenv("TZ", "America/New_York")
    discard_runner()
    second = runner()
    assert second is not first
    assert second.duck.execute("SELECT current_setting('TimeZone')").fetchall() == [("America/New_York",)]
    assert verdicts() == before
    monkeypatch.delenv("TZ")
    discard_runner()


def test_suites_that_differ_only_in_a_value_type_do_not_share_a_memoised_graph() -> None:
    """Fix 7 keys its graphs by the configurations: a date and the same date as text (YAML's 2025-01-01 vs
    "2025-01-01") are different checks and must be judged each by its own graph, as GX does."""
    import datetime as dt

    import pyarrow as pa

    from quality.gx_gate import GXGate
    from quality.suites import Spec, SuiteSpec

    ds = load(REPO / "zones.yaml").dataset("utbetalning")
    page = pa.table({"s": ["2025-1-1", "2025-01-01", "2025-01-01 00:00:00"]})

    def failed(value: Any) -> int:
        suite = SuiteSpec("typed.promote", [Spec("expect_column_values_to_be_in_set",
                                                 {"column": "s", "value_set": [value]}, "quarantine")])
        out = GXGate("typed", ds, suite=suite).check(page, bad_type=pa.array([False] * 3), dataset=ds)
        return out.rejected.num_rows

    as_date, as_text = failed(dt.date(2025, 1, 1)), failed("2025-01-01")
    assert as_text == 2 and as_date != as_text  # text matches one row exactly; DuckDB casts the rows for a date


def test_gx_errors_are_read_in_both_shapes_and_cut_to_names_without_values() -> None:
    """``raised`` reads an expectation's own exception and a failed metric's alike; the message keeps quoted column
    names, drops quoted values, long digit runs, the SQL with its parameters and the traceback."""
    from quality.gx_gate import raised

    message = ('Conversion Error: Could not convert string \'19121212-1212\' to DATE in column "pnr" near "Anna" '
               "(value 191212121212)\n[SQL: SELECT * FROM t WHERE pnr = $1]\n[parameters: ('191212121212',)]")
    own = {"raised_exception": True, "exception_message": message, "exception_traceback": "Traceback ..."}
    metric = {"MetricConfigurationID(metric_name='column_values.in_set.unexpected_count')": own,
              "MetricConfigurationID(metric_name='table.row_count')": {"raised_exception": False}}
    want = ("Conversion Error: Could not convert string '…' to DATE in column \"pnr\" near \"…\" (value …)")
    assert raised(own, ["pnr"]) == raised(metric, ["pnr"]) == want
    assert raised({"raised_exception": False, "exception_message": None}, ["pnr"]) is None
    assert raised({}, []) is None and raised(None, []) is None


def test_release_refuses_a_batch_an_interrupted_promotion_left_open(tmp_path: Path) -> None:
    """A crash after quarantining leaves its batch open; the rerun abandons it and re-reads its rows. Releasing it
    in between would put those rows in warm twice: release refuses, and after the rerun warm equals hot."""
    import os
    from datetime import timedelta

    from tests.helpers import assert_warm_matches_hot
    from zones.errors import TerminalError

    project = _project(tmp_path, None)
    ids = _ids(project, "SELECT utbetalning_id FROM utbetalning ORDER BY utbetalning_id LIMIT 1 OFFSET 900")
    _sql(project, f"UPDATE utbetalning SET netto_sek = netto_sek + 5 WHERE utbetalning_id = {ids[0]}")
    env = {**os.environ, "DATAZONES_FAULT": "after_quarantine:1"}
    as_of = AS_OF + timedelta(hours=1)  # past the settle lag of every seeded row
    crashed = subprocess.run([sys.executable, "-m", "tests.fault_runner", str(project.file), "utbetalning",
                              as_of.isoformat(), "700"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    open_batch = summary(project, "utbetalning")[0]["batch_id"]
    ledger = Ledger(project.ledger_url)
    assert ledger.batch_status(open_batch) == "started"
    _sql(project, f"UPDATE utbetalning SET netto_sek = netto_sek - 5 WHERE utbetalning_id = {ids[0]}")  # fixed
    with pytest.raises(TerminalError, match="not committed: its promotion was interrupted"):
        release(project, "utbetalning", open_batch)
    rerun = promote(project, "utbetalning", as_of=as_of, batch_rows=700)
    assert rerun.recovered_batches == 1 and ledger.batch_status(open_batch) == "abandoned"
    ledger.dispose()
    assert assert_warm_matches_hot(project, "utbetalning") > 0  # every row once, the fixed one included
    assert summary(project, "utbetalning") == []


def test_a_rejected_row_reread_in_the_lookback_is_quarantined_once_and_a_released_one_stays_released(
        tmp_path: Path) -> None:
    """Every incremental run re-reads the lookback window: a row version already in quarantine is not added
    again (one open entry, not one per run), and once released it is not quarantined anew."""
    from datetime import timedelta

    from lifecycle.status import dataset_status

    project = _project(tmp_path, None)
    promote(project, "utbetalning", as_of=AS_OF + timedelta(hours=1))
    key = _ids(project, "SELECT utbetalning_id FROM utbetalning ORDER BY utbetalning_id LIMIT 1 OFFSET 5")[0]
    t = AS_OF + timedelta(days=1)
    _sql(project, f"UPDATE utbetalning SET netto_sek = netto_sek + 5, andrad = '{t:%Y-%m-%d %H:%M:%S.%f}' "
                  f"WHERE utbetalning_id = {key}")
    reports = [promote(project, "utbetalning", as_of=t + timedelta(minutes=m)) for m in (10, 30, 50)]
    assert [r.rows_quarantined for r in reports] == [1, 1, 1]  # the gate rejects it each time it is read
    entries = summary(project, "utbetalning")
    assert [(e["open"], e["released"]) for e in entries] == [(1, 0)]  # but it is held once
    quarantined = {r["dataset"]: r["quarantined"] for r in dataset_status(project)}
    assert quarantined["utbetalning"] == 1  # `zones status`: what the quarantine holds, not the runs' sum
    over = release(project, "utbetalning", entries[0]["batch_id"], override_by="anna.steward", reason="case 17")
    assert over.released == 1 and str(key) in _warm_keys(project, "utbetalning")
    promote(project, "utbetalning", as_of=t + timedelta(minutes=55))  # re-read once more
    assert [(e["open"], e["released"]) for e in summary(project, "utbetalning")] == [(0, 1)]
    assert {r["dataset"]: r["quarantined"] for r in dataset_status(project)}["utbetalning"] == 0


def test_a_quarantined_row_reread_after_a_pseudonym_key_rotation_is_not_quarantined_again(tmp_path: Path) -> None:
    """``_dz_version`` is keyed with the pseudonym key: after a rotation the old key, listed as retired, still
    recognises the row versions quarantined under it."""
    import dataclasses
    import secrets
    from datetime import timedelta

    from lifecycle.protect import load_keys

    project = _project(tmp_path, None)
    old = load_keys(need_seal=True)
    promote(project, "utbetalning", as_of=AS_OF + timedelta(hours=1), keys=old)
    key = _ids(project, "SELECT utbetalning_id FROM utbetalning ORDER BY utbetalning_id LIMIT 1 OFFSET 5")[0]
    t = AS_OF + timedelta(days=1)
    _sql(project, f"UPDATE utbetalning SET netto_sek = netto_sek + 5, andrad = '{t:%Y-%m-%d %H:%M:%S.%f}' "
                  f"WHERE utbetalning_id = {key}")
    assert promote(project, "utbetalning", as_of=t + timedelta(minutes=10), keys=old).rows_quarantined == 1
    rotated = dataclasses.replace(old, pseudonym_key=secrets.token_bytes(32), pseudonym_key_id="k-rotated",
                                  retired_pseudonym_keys=(old.pseudonym_key,))
    assert promote(project, "utbetalning", as_of=t + timedelta(minutes=30), keys=rotated).rows_quarantined == 1
    assert [(e["open"], e["released"]) for e in summary(project, "utbetalning")] == [(1, 0)]


def test_repeated_compound_keys_go_to_quarantine_row_by_row() -> None:
    """GX's SQL path counts repeated combinations for expect_compound_columns_to_be_unique (the check every
    composite primary key gets) but lists no rows: the gate finds them itself, skipping rows as GX does, and
    the count check holds them to GX's count."""
    import pyarrow as pa

    from quality.gx_gate import GXGate
    from quality.suites import Spec, SuiteSpec

    ds = load(REPO / "zones.yaml").dataset("utbetalning")
    page = pa.table({"a": [1, 1, None, None, 2, 3, 3, 4], "b": [1, 1, None, None, 5, 6, 6, None]})
    want = [0, 1, 5, 6]  # (1,1) and (3,6) twice; (None,None) repeats too, but a missing value equals nothing
    for ignore in ("all_values_are_missing", "never"):
        suite = SuiteSpec("compound.promote", [Spec("expect_compound_columns_to_be_unique",
                                                     {"column_list": ["a", "b"], "ignore_row_if": ignore},
                                                     "quarantine")])
        out = GXGate("compound", ds, suite=suite).check(page, bad_type=pa.array([False] * 8), dataset=ds)
        assert not out.blocked, out.blocking_summary()
        rows = list(zip(page.column("a").to_pylist(), page.column("b").to_pylist(), strict=True))
        got = list(zip(out.rejected.column("a").to_pylist(), out.rejected.column("b").to_pylist(), strict=True))
        assert sorted(got, key=repr) == sorted((rows[i] for i in want), key=repr), ignore
        assert out.passed.num_rows == 8 - len(want)


def test_redaction_keeps_contractions_readable() -> None:
    from quality.gx_gate import raised

    got = raised({"raised_exception": True,
                  "exception_message": "Can't compare column 'belopp' with '19121212-1212'"}, ["belopp"])
    assert got == "Can't compare column 'belopp' with '…'"


def test_a_changed_rejected_row_with_the_same_watermark_is_quarantined_again(tmp_path: Path) -> None:
    """The quarantine tells row versions apart by content, not key and watermark alone: a row corrected badly
    within one watermark tick and rejected again is held in its new form too."""
    from datetime import timedelta


    project = _project(tmp_path, None)
    promote(project, "utbetalning", as_of=AS_OF + timedelta(hours=1))
    key = _ids(project, "SELECT utbetalning_id FROM utbetalning ORDER BY utbetalning_id LIMIT 1 OFFSET 5")[0]
    t = AS_OF + timedelta(days=1)
    for minutes, bump in ((10, 5), (20, 7)):  # two bad versions, one watermark value
        _sql(project, f"UPDATE utbetalning SET netto_sek = brutto_sek - skatt_sek + {bump}, "
                      f"andrad = '{t:%Y-%m-%d %H:%M:%S.%f}' WHERE utbetalning_id = {key}")
        promote(project, "utbetalning", as_of=t + timedelta(minutes=minutes))
    assert [e["open"] for e in summary(project, "utbetalning")] == [1, 1]
