"""Promotion hot → warm against real SQLite and PostgreSQL hot stores, real Delta on disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lifecycle import demo
from lifecycle.ledger import Ledger
from lifecycle.locks import writer_lock
from lifecycle.promote import GateBlocked, promote
from lifecycle.warm import WarmTable
from tests.conftest import write_project
from tests.helpers import assert_warm_matches_hot
from zones.config import Project, load
from zones.errors import LockHeldError, MissingSecretError, SchemaChangeError
from zones.hot import make_engine

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
ALL = ["individ", "arende", "beslut", "utbetalning", "lakarintyg", "agi_iu"]


def seeded_project(backend: dict[str, str], tmp_path: Path, **kw: object) -> Project:
    path = write_project(tmp_path, hot_url=backend["hot"], ledger_url=backend["ledger"], **kw)  # type: ignore[arg-type]
    project = load(path, env={})
    eng = make_engine(project.hot_url)
    demo.create_schema(eng)
    demo.seed(eng, scale=1, as_of=AS_OF - timedelta(hours=1), seed=42)
    eng.dispose()
    return project


def test_full_incremental_and_noop_keep_warm_equal_to_hot(backend: dict[str, str], tmp_path: Path) -> None:
    project = seeded_project(backend, tmp_path)
    for name in ALL:
        rep = promote(project, name, as_of=AS_OF, batch_rows=3000)
        assert rep.mode == "full" and rep.rows_read == rep.rows_written > 0 and rep.rows_quarantined == 0
        assert rep.key_id and rep.delta_version is not None and rep.bytes_written > 0
        assert assert_warm_matches_hot(project, name) == rep.rows_written
    eng = make_engine(project.hot_url)
    changed = demo.churn(eng, as_of=AS_OF + timedelta(days=1), seed=3, fraction=0.05)
    eng.dispose()
    assert sum(changed.values()) > 0
    run2 = AS_OF + timedelta(days=1, hours=1)
    reports = {name: promote(project, name, as_of=run2) for name in ALL}
    assert all(r.mode == "incremental" for r in reports.values())
    assert reports["utbetalning"].rows_read > 0 and reports["arende"].rows_read > 0
    for name in ALL:
        assert_warm_matches_hot(project, name)
    again = promote(project, "utbetalning", as_of=run2)
    assert again.mode == "noop" and again.rows_read == 0
    ledger = Ledger(project.ledger_url)
    assert ledger.verify() == []
    assert ledger.watermark("utbetalning") == (run2 - timedelta(minutes=2)).isoformat()


def test_warm_is_partitioned_zstd_with_change_data_feed(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = seeded_project(backend, tmp_path, datasets=["utbetalning"])
    promote(project, "utbetalning", as_of=AS_OF)
    from deltalake import DeltaTable

    dt = DeltaTable(project.warm_table_uri("utbetalning"))
    assert dt.metadata().partition_columns == ["_dz_period"]
    assert dt.metadata().configuration["delta.enableChangeDataFeed"] == "true"
    import pyarrow.parquet as pq

    f = next(Path(project.warm_table_uri("utbetalning")).rglob("*.parquet"))
    assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"
    years = {int(p.name.split("=")[1]) for p in Path(project.warm_table_uri("utbetalning")).glob("_dz_period=*")}
    assert len(years) >= 12  # the demo spans at least 12 years of payments
    # readable without datazones: DuckDB over deltalake's Arrow dataset
    import duckdb

    utb = dt.to_pyarrow_dataset()  # noqa: F841
    n = duckdb.sql("SELECT count(*) FROM utb").fetchall()
    assert n[0][0] == WarmTable(project.warm_table_uri("utbetalning")).count()


def test_bad_rows_go_to_quarantine_with_reason_and_nothing_is_lost(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = seeded_project(backend, tmp_path, datasets=["utbetalning"])
    eng = make_engine(project.hot_url)
    with eng.begin() as c:  # SQLite lets wrong types and NULLs through: exactly what a gate is for
        c.execute(sa.text("PRAGMA foreign_keys=OFF"))
        c.execute(sa.text("UPDATE utbetalning SET brutto_sek = 'tolv' WHERE utbetalning_id = "
                          "(SELECT min(utbetalning_id) FROM utbetalning)"))
        c.execute(sa.text("INSERT INTO utbetalning (utbetalning_id, beslut_id, individ_id, utbetald, konto, "
                          "status, andrad) VALUES (99999999, 1, 1, '2025-13-45', '12345678901', 'PLANERAD', "
                          "'2025-12-01 00:00:00.000000')"))
        hot_n = c.execute(sa.text("SELECT count(*) FROM utbetalning")).scalar()
    eng.dispose()
    rep = promote(project, "utbetalning", as_of=AS_OF)
    assert rep.rows_quarantined == 2 and rep.rows_read == hot_n == rep.rows_written + 2
    assert rep.checks["wrong_type"] == 2 and rep.checks["column_values_to_not_be_null(utbetalning_id)"] == 0
    q = WarmTable(project.quarantine_uri("utbetalning")).to_arrow()
    assert sorted(q.column("_dz_reason").to_pylist()) == [
        "column_values_to_not_be_null(utbetald);period_to_be_ordered(avser_from,avser_tom);wrong_type", "wrong_type"]
    assert "99999999" in q.column("utbetalning_id").to_pylist()
    assert set(q.column("_dz_batch").to_pylist()) <= set(rep.batch_ids)
    assert "konto" not in q.column_names  # the raw row is only inside the sealed _dz_row
    from lifecycle.protect import unseal
    from tests.conftest import SEAL_KEY

    rows = unseal(q.column("_dz_row"), bytes.fromhex(SEAL_KEY), aad=b"datazones:utbetalning:_quarantine")
    assert any('"tolv"' in r for r in rows.to_pylist())
    assert WarmTable(project.warm_table_uri("utbetalning")).count() == rep.rows_written


def test_new_nullable_column_is_added_and_type_change_stops(pg_schema: str, tmp_path: Path) -> None:
    from tests.conftest import pg_url

    backend = {"hot": pg_url(pg_schema), "ledger": pg_url(pg_schema)}
    project = seeded_project(backend, tmp_path, datasets=["utbetalning"])
    promote(project, "utbetalning", as_of=AS_OF)
    eng = make_engine(project.hot_url)
    with eng.begin() as c:
        c.execute(sa.text("ALTER TABLE utbetalning ADD COLUMN referens VARCHAR(30)"))
        c.execute(sa.text("UPDATE utbetalning SET referens = 'OCR' || utbetalning_id, andrad = :t "
                          "WHERE utbetalning_id % 10 = 0"), {"t": AS_OF + timedelta(hours=1)})
    rep = promote(project, "utbetalning", as_of=AS_OF + timedelta(hours=2))
    assert rep.new_columns == ["referens"] and rep.rows_written > 0
    t = WarmTable(project.warm_table_uri("utbetalning")).to_arrow(columns=["utbetalning_id", "referens"])
    filled = [r for r in t.to_pylist() if r["referens"] is not None]
    assert filled and all(r["referens"] == f"OCR{r['utbetalning_id']}" for r in filled)
    assert len(filled) < t.num_rows  # old rows read null
    before = WarmTable(project.warm_table_uri("utbetalning")).version()
    with eng.begin() as c:  # a column without a declared type: the warm schema check stops it at commit
        c.execute(sa.text("ALTER TABLE utbetalning ALTER COLUMN referens TYPE integer USING length(referens)"))
        c.execute(sa.text("UPDATE utbetalning SET andrad = :t WHERE utbetalning_id % 7 = 0"),
                  {"t": AS_OF + timedelta(hours=3)})
    with pytest.raises(SchemaChangeError, match=r"'referens'.*warm has string, hot now gives int32"):
        promote(project, "utbetalning", as_of=AS_OF + timedelta(hours=4))
    assert WarmTable(project.warm_table_uri("utbetalning")).version() == before
    with eng.begin() as c:  # brutto_sek declares `type: integer`: the gate blocks before anything is written
        c.execute(sa.text("ALTER TABLE utbetalning ALTER COLUMN brutto_sek TYPE varchar(20)"))
    eng.dispose()
    with pytest.raises(GateBlocked, match=r"column_values_to_be_in_type_list\(brutto_sek\) \[block\] failed"):
        promote(project, "utbetalning", as_of=AS_OF + timedelta(hours=4))
    assert WarmTable(project.warm_table_uri("utbetalning")).version() == before


def test_missing_key_fails_closed_before_any_write(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = seeded_project(backend, tmp_path, datasets=["utbetalning"])
    monkeypatch.delenv("DATAZONES_PSEUDONYM_KEY")
    with pytest.raises(MissingSecretError, match="DATAZONES_PSEUDONYM_KEY"):
        promote(project, "utbetalning", as_of=AS_OF)
    assert not WarmTable(project.warm_table_uri("utbetalning")).exists()
    assert Ledger(project.ledger_url).last_batch("utbetalning") is None


def test_second_writer_is_refused_while_the_lock_is_held(backend: dict[str, str], tmp_path: Path) -> None:
    project = seeded_project(backend, tmp_path, datasets=["utbetalning"])
    ledger = Ledger(project.ledger_url)
    with writer_lock(ledger.engine, "warm.utbetalning"), pytest.raises(LockHeldError, match="another run"):
        promote(project, "utbetalning", as_of=AS_OF)
    assert promote(project, "utbetalning", as_of=AS_OF).rows_written > 0  # released


def test_validate_live_names_missing_column_and_line(tmp_path: Path) -> None:
    from zones.validate import validate_live

    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    seeded_project(backend, tmp_path)
    path = write_project(tmp_path, hot_url=backend["hot"], ledger_url=backend["ledger"], edit=lambda raw: raw[
        "datasets"]["utbetalning"]["columns"].update(kontonr=raw["datasets"]["utbetalning"]["columns"].pop("konto")))
    findings = validate_live(load(path, env={}))
    errors = [f for f in findings if f.level == "error"]
    assert len(errors) == 1 and "'kontonr' does not exist in hot table 'utbetalning'" in errors[0].message
    assert errors[0].key_path == "datasets.utbetalning.columns.kontonr" and ":" in errors[0].where
    assert any("'konto'" in f.message and f.level == "warning" for f in findings)


def test_validate_live_refuses_a_declared_type_the_hot_column_does_not_have(backend: dict[str, str],
                                                                          tmp_path: Path) -> None:
    """`type: date` on an integer column would block every batch at the gate: validate says so first, with the
    type to declare; the demo's declarations all match both hot stores."""
    from zones.validate import validate_live

    seeded_project(backend, tmp_path)
    assert [f for f in validate_live(load(tmp_path / "zones.yaml", env={})) if f.key_path.endswith(".type")] == []
    path = write_project(tmp_path, hot_url=backend["hot"], ledger_url=backend["ledger"], edit=lambda raw: raw[
        "datasets"]["utbetalning"]["columns"]["brutto_sek"].update(type="date"))
    bad = [f for f in validate_live(load(path, env={})) if f.key_path.endswith(".type")]
    assert len(bad) == 1 and bad[0].level == "error" and bad[0].fix == "declare `type: integer`"
    assert bad[0].key_path == "datasets.utbetalning.columns.brutto_sek.type" and "'date'" in bad[0].message


def test_validate_live_warns_when_no_index_leads_with_the_watermark(backend: dict[str, str], tmp_path: Path) -> None:
    """Without an index on the watermark every incremental run scans the hot table: validate says so, with the fix."""
    from zones.validate import Finding, validate_live

    project = seeded_project(backend, tmp_path, datasets=["utbetalning", "beslut"])

    def watermark_warnings() -> list[Finding]:
        return [f for f in validate_live(project) if f.key_path.endswith(".watermark")]

    assert watermark_warnings() == []  # the demo DDL indexes (andrad, <key>) on every table
    eng = make_engine(project.hot_url)
    with eng.begin() as c:
        c.exec_driver_sql("DROP INDEX utbetalning_andrad_idx")
    eng.dispose()
    found = watermark_warnings()
    assert len(found) == 1 and found[0].level == "warning"
    assert found[0].key_path == "datasets.utbetalning.watermark" and "'andrad'" in found[0].message
    assert found[0].fix.startswith("CREATE INDEX utbetalning_andrad_idx ON ")
    assert found[0].fix.endswith("utbetalning (andrad, utbetalning_id)")


def test_incremental_without_changes_commits_an_empty_batch_without_loading_gx(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Most scheduled incremental runs find nothing new: they must not pay for Great Expectations (~1.5 s to
    load). With no changed rows the gate is neither prepared nor asked; with changes, the real GX gate runs.
    Where GX is in memory already (a warm worker) the gate is prepared up front, with the hot table's schema."""
    from typing import Any

    import lifecycle.promote as promote_module
    from quality.gx_gate import GXGate

    class Watched(GXGate):  # the real GX gate, counting what promote asks of it
        prepared = checked = 0

        def prepare(self, project: Any, schema: Any = None) -> None:
            self.prepared += 1
            self.schemas = [*getattr(self, "schemas", []), schema]
            super().prepare(project, schema)

        def check(self, data: Any, **kw: Any) -> Any:
            self.checked += 1
            return super().check(data, **kw)

    project = seeded_project({"hot": f"sqlite:///{tmp_path / 'hot.db'}", "ledger": f"sqlite:///{tmp_path / 'l.db'}"},
                             tmp_path)
    ds = project.dataset("utbetalning")
    assert promote(project, "utbetalning", as_of=AS_OF).rows_written > 0
    quiet = Watched("utbetalning", ds)
    with monkeypatch.context() as m:
        m.setattr(promote_module, "gx_in_memory", lambda: False)  # as in a fresh process
        rep = promote(project, "utbetalning", as_of=AS_OF + timedelta(hours=1), gate=quiet)
    assert (rep.mode, rep.rows_read, rep.batches) == ("incremental", 0, 1)
    assert (quiet.prepared, quiet.checked) == (0, 0)
    warm_worker = Watched("utbetalning", ds)
    rep = promote(project, "utbetalning", as_of=AS_OF + timedelta(hours=2), gate=warm_worker)
    assert (rep.mode, rep.rows_read, warm_worker.prepared, warm_worker.checked) == ("incremental", 0, 1, 0)
    eng = make_engine(project.hot_url)
    assert warm_worker.schemas[0].names == [c["name"] for c in sa.inspect(eng).get_columns(ds.table)]
    eng.dispose()
    ledger = Ledger(project.ledger_url)
    assert ledger.watermark("utbetalning") == (AS_OF + timedelta(hours=2) - timedelta(minutes=2)).isoformat()
    runs = [r for r in ledger.gate_runs("utbetalning") if r["batch_id"] in rep.batch_ids]
    assert [(r["rows"], r["success"], r["suite"]) for r in runs] == [(0, True, quiet.suite.name)]
    eng = make_engine(project.hot_url)
    assert demo.churn(eng, as_of=AS_OF + timedelta(days=1), seed=3, fraction=0.05)["utbetalning"] > 0
    eng.dispose()
    busy = Watched("utbetalning", ds)
    events: list[str] = []
    pages = promote_module.HotReader.pages

    def watched_pages(self: Any, **kw: Any) -> Any:
        events.append("extract")
        yield from pages(self, **kw)

    with monkeypatch.context() as m:  # a fresh process with rows to promote: GX loads before extraction starts
        m.setattr(promote_module, "gx_in_memory", lambda: False)
        m.setattr(promote_module.HotReader, "pages", watched_pages)
        m.setattr(busy, "prepare", lambda *a, **kw: (events.append("prepare"), Watched.prepare(busy, *a, **kw)))
        rep = promote(project, "utbetalning", as_of=AS_OF + timedelta(days=1, hours=1), gate=busy)
    assert rep.mode == "incremental" and rep.rows_read > 0 and rep.timings.get("gate_load", 0) > 0
    assert busy.prepared == 1 and busy.checked == rep.batches and events == ["prepare", "extract"]
    assert assert_warm_matches_hot(project, "utbetalning") > 0
    assert ledger.verify() == []


def test_reflect_reads_columns_and_key_and_names_a_missing_table_or_schema(backend: dict[str, str],
                                                                           tmp_path: Path) -> None:
    """Only columns and the primary key are reflected; a missing table — or, on SQLite, a schema that is not an
    attached database — is a ConfigError with the fix, on both backends."""
    from zones.errors import ConfigError
    from zones.hot import reflect

    eng = make_engine(backend["hot"])
    with eng.begin() as c:
        c.exec_driver_sql('CREATE TABLE "Mixed" (b INTEGER NOT NULL, a VARCHAR(10) NOT NULL, note TEXT, '
                          "PRIMARY KEY (b, a))")
    try:
        hot = reflect(eng, "Mixed")
        assert list(hot.columns) == ["b", "a", "note"]
        assert {c.name for c in hot.table.primary_key} == {"a", "b"}
        assert [c.nullable for c in hot.table.columns] == [False, False, True]
        for table, schema in (("nope", None), ("Mixed", "nope")):
            with pytest.raises(ConfigError, match="does not exist in the hot store") as err:
                reflect(eng, table, schema)
            assert "zones demo seed" in str(err.value)
    finally:
        eng.dispose()


def test_a_gate_with_the_original_prepare_signature_still_works(tmp_path: Path) -> None:
    """Gates written to the first form of the protocol, ``prepare(project)``, are prepared without ``schema``."""
    from typing import Any

    from quality.gate import GateOutcome

    class OldGate:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def prepare(self, project: Any) -> None:
            self.calls.append(("prepare", project))

        def ready(self) -> None:
            self.calls.append(("ready",))

        def check(self, data: Any, **_: Any) -> GateOutcome:
            import pyarrow as pa

            return GateOutcome(data, data.slice(0, 0), pa.array([], pa.string()), [])

    project = seeded_project({"hot": f"sqlite:///{tmp_path / 'hot.db'}", "ledger": f"sqlite:///{tmp_path / 'l.db'}"},
                             tmp_path)
    gate = OldGate()
    rep = promote(project, "utbetalning", as_of=AS_OF, gate=gate)  # type: ignore[arg-type]
    assert rep.rows_written > 0
    assert gate.calls[:2] == [("prepare", project), ("ready",)] and len(gate.calls) == 2


def test_exit_while_a_rehearsal_runs_is_clean(tmp_path: Path) -> None:
    """A process whose last run found no rows exits while that run's gate may still be rehearsing on its loader
    thread (GX was in memory from an earlier run): the exit waits for it instead of closing DuckDB under it
    (which aborted the process or printed a traceback)."""
    import os
    import subprocess
    import sys
    import textwrap

    from tests.conftest import REPO

    script = textwrap.dedent(f"""
        import sys
        from datetime import timedelta
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from tests.test_promote import AS_OF, seeded_project
        from lifecycle.promote import promote
        tmp = Path({str(tmp_path)!r})
        project = seeded_project({{"hot": f"sqlite:///{{tmp}}/hot.db", "ledger": f"sqlite:///{{tmp}}/l.db"}}, tmp)
        assert promote(project, "utbetalning", as_of=AS_OF).rows_written > 0
        for hours in (1, 2, 3):
            assert promote(project, "utbetalning", as_of=AS_OF + timedelta(hours=hours)).rows_read == 0
        print("done", flush=True)
    """)
    env = {**os.environ, "DATAZONES_PSEUDONYM_KEY": "a" * 64, "DATAZONES_SEAL_KEY": "b" * 64}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert (out.returncode, out.stdout.strip()) == (0, "done"), out.stderr[-3000:]
    for sign in ("Traceback", "Exception ignored", "terminate called", "FATAL"):
        assert sign not in out.stderr, out.stderr[-3000:]


def test_a_run_that_loses_its_postgresql_writer_lock_stops_before_writing(pg_schema: str, tmp_path: Path) -> None:
    """The advisory lock lives as long as its session. The session is not left idle in a transaction, and when it
    ends mid-run (here: terminated while the first page is judged) the run stops before its Delta commit; the
    rerun repairs the open batch and warm equals hot."""
    from typing import Any

    import pyarrow as pa

    from quality.gate import GateOutcome
    from tests.conftest import pg_url
    from tests.helpers import assert_warm_matches_hot
    from zones.errors import LockHeldError

    backend = {"hot": pg_url(pg_schema), "ledger": pg_url(pg_schema)}
    project = seeded_project(backend, tmp_path, datasets=["utbetalning"])
    admin = make_engine(pg_url(pg_schema))

    def lock_sessions() -> list[tuple[int, str]]:
        with admin.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(
                "SELECT a.pid, a.state FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"))]

    class Killer:  # passes every row; on the first page it ends the lock's session, as a network drop would
        def __init__(self) -> None:
            self.seen: list[list[tuple[int, str]]] = []

        def check(self, data: Any, **_: Any) -> GateOutcome:
            if not self.seen:
                sessions = lock_sessions()
                self.seen.append(sessions)
                with admin.connect() as c:
                    for pid, _state in sessions:
                        c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            return GateOutcome(data, data.slice(0, 0), pa.array([], pa.string()), [])

    killer = Killer()
    with pytest.raises(LockHeldError, match="was lost"):
        promote(project, "utbetalning", as_of=AS_OF, gate=killer, batch_rows=700)  # type: ignore[arg-type]
    assert len(killer.seen[0]) == 1 and killer.seen[0][0][1] == "idle"  # not "idle in transaction"
    assert WarmTable(project.warm_table_uri("utbetalning")).count() == 0  # nothing written without the lock
    assert promote(project, "utbetalning", as_of=AS_OF, batch_rows=700).recovered_batches == 1
    assert assert_warm_matches_hot(project, "utbetalning") > 0
    assert lock_sessions() == []
    admin.dispose()


def test_an_as_of_past_the_hot_stores_clock_is_refused(backend: dict[str, str], tmp_path: Path) -> None:
    """A watermark ahead of the hot store's clock would pass rows not yet written (lost for good once the skew
    exceeds settle_lag + lookback): an explicit later --as-of is refused before anything is read; the default
    as-of never runs ahead of the hot clock."""
    from zones.errors import TerminalError
    from zones.hot import clock

    project = seeded_project(backend, tmp_path, datasets=["utbetalning"])
    eng = make_engine(project.hot_url)
    hot_now = clock(eng)
    eng.dispose()
    assert abs((hot_now - datetime.now(UTC)).total_seconds()) < 5  # same machine: the clocks agree
    with pytest.raises(TerminalError, match="later than the hot store's clock"):
        promote(project, "utbetalning", as_of=hot_now + timedelta(hours=2))
    ledger = Ledger(project.ledger_url)
    assert ledger.watermark("utbetalning") is None and ledger.last_batch("utbetalning") is None
    rep = promote(project, "utbetalning")  # as-of now
    eng = make_engine(project.hot_url)
    assert rep.rows_written > 0 and datetime.fromisoformat(ledger.watermark("utbetalning") or "") <= clock(eng)
    eng.dispose()
    ledger.dispose()


def test_a_second_change_within_one_watermark_tick_reaches_warm(backend: dict[str, str], tmp_path: Path) -> None:
    """Two versions of a row with the same watermark value (a clock counting whole seconds, or PostgreSQL's now()
    at transaction start): the one read later, inside the lookback window, is the later version and wins."""
    project = seeded_project(backend, tmp_path, datasets=["utbetalning"])
    promote(project, "utbetalning", as_of=AS_OF)
    eng = make_engine(project.hot_url)
    key = 7
    t = AS_OF + timedelta(days=1)

    def set_status(status: str) -> None:
        with eng.begin() as c:
            c.execute(sa.text("UPDATE utbetalning SET status = :s, andrad = :t WHERE utbetalning_id = :k"),
                      {"s": status, "t": t if backend["name"] == "postgresql" else t.strftime("%Y-%m-%d %H:%M:%S.%f"),
                       "k": key})

    def warm_status() -> str:
        rows = WarmTable(project.warm_table_uri("utbetalning")).to_arrow(columns=["utbetalning_id", "status"])
        return next(r["status"] for r in rows.to_pylist() if r["utbetalning_id"] == key)

    set_status("ATERKRAVD")
    promote(project, "utbetalning", as_of=t + timedelta(minutes=10))
    assert warm_status() == "ATERKRAVD"
    again = promote(project, "utbetalning", as_of=t + timedelta(minutes=15))  # re-reads it, unchanged
    assert again.rows_read == 1 and warm_status() == "ATERKRAVD"
    set_status("MAKULERAD")  # the same watermark value
    promote(project, "utbetalning", as_of=t + timedelta(minutes=20))
    assert warm_status() == "MAKULERAD"
    eng.dispose()
    assert assert_warm_matches_hot(project, "utbetalning") > 0


def test_sqlite_timestamp_text_is_read_with_its_offset_fraction_and_date_forms(tmp_path: Path) -> None:
    """SQLite holds timestamps as text in whatever form the application wrote: an offset is applied (not cut
    off), text without one is UTC, a 'T' or ' ' separator, any fraction (beyond µs cut), a date alone."""
    from zones.hot import HotReader, reflect

    eng = make_engine(f"sqlite:///{tmp_path / 'hot.db'}")
    forms = {1: "2026-01-02 10:00:00+02:00", 2: "2026-01-02 08:00:00.500000+00:00", 3: "2026-01-02T08:00:00Z",
             4: "2026-01-02 08:00:00", 5: "2026-01-02 08:00:00.1234567", 6: "2026-01-02", 7: "2026-01-02 09:30-0130"}
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, at DATETIME)")
        for k, v in forms.items():
            c.exec_driver_sql("INSERT INTO t VALUES (?, ?)", (k, v))
    hot = reflect(eng, "t")
    page = HotReader(eng, hot, key=["id"], watermark="at").page(hi=datetime(2027, 1, 1, tzinfo=UTC), lo=None,
                                                                 after=None, limit=100)
    eng.dispose()
    assert not any(page.bad_type.to_pylist())
    got = dict(zip(page.data.column("id").to_pylist(), page.data.column("at").to_pylist(), strict=True))
    base = datetime(2026, 1, 2, 8, tzinfo=UTC)
    assert got == {1: base, 2: base + timedelta(microseconds=500_000), 3: base, 4: base,
                   5: base + timedelta(microseconds=123_456), 6: datetime(2026, 1, 2, tzinfo=UTC),
                   7: datetime(2026, 1, 2, 11, tzinfo=UTC)}


def test_a_full_load_quarantines_rows_without_a_watermark_instead_of_skipping_them(pg_schema: str,
                                                                                   tmp_path: Path) -> None:
    """A row whose watermark is NULL matches no watermark window: the full load reads it anyway, so the gate's
    not-null check puts it in quarantine with its reason — every hot row is in warm or in quarantine."""
    from lifecycle.release import summary
    from tests.conftest import pg_url
    from tests.helpers import assert_warm_matches_hot

    project = seeded_project({"hot": pg_url(pg_schema), "ledger": pg_url(pg_schema)}, tmp_path,
                             datasets=["utbetalning"])
    eng = make_engine(project.hot_url)
    with eng.begin() as c:
        c.execute(sa.text("ALTER TABLE utbetalning ALTER COLUMN andrad DROP NOT NULL"))
        c.execute(sa.text("UPDATE utbetalning SET andrad = NULL WHERE utbetalning_id = 11"))
        total = c.execute(sa.text("SELECT count(*) FROM utbetalning")).scalar()
    eng.dispose()
    rep = promote(project, "utbetalning", as_of=AS_OF, batch_rows=700)
    assert (rep.rows_read, rep.rows_quarantined) == (total, 1)
    held = summary(project, "utbetalning")
    assert [(e["open"], e["reasons"]) for e in held] == [(1, {"column_values_to_not_be_null(andrad)": 1})]
    assert assert_warm_matches_hot(project, "utbetalning") == total - 1


def test_the_window_probe_sees_exactly_the_rows_a_run_would_read(backend: dict[str, str], tmp_path: Path) -> None:
    """``any_rows`` (which decides whether a fresh incremental run loads GX before extracting) agrees with the
    pages the run reads, on both hot stores, at the window's edges included."""
    from zones.hot import HotReader, reflect

    project = seeded_project(backend, tmp_path, datasets=["utbetalning"])
    ds = project.dataset("utbetalning")
    eng = make_engine(project.hot_url)
    reader = HotReader(eng, reflect(eng, ds.table, ds.schema_ or project.config.hot.schema_),
                       key=list(ds.primary_key), watermark=ds.watermark)
    try:
        newest = max(reader.page(hi=AS_OF, lo=None, after=None, limit=10**6).data.column(ds.watermark).to_pylist())
        for lo, hi in ((None, AS_OF), (newest - timedelta(seconds=1), newest), (newest, AS_OF),
                       (AS_OF, AS_OF + timedelta(days=1))):
            rows = reader.page(hi=hi, lo=lo, after=None, limit=10**6).data.num_rows
            assert reader.any_rows(hi=hi, lo=lo) == (rows > 0), (lo, hi, rows)
        assert reader.any_rows(hi=newest, lo=newest - timedelta(seconds=1))
        assert not reader.any_rows(hi=AS_OF, lo=newest)
    finally:
        reader.close()
        eng.dispose()


def test_a_scan_streams_exact_chunks_in_the_reflected_types(backend: dict[str, str]) -> None:
    """HotReader.scan (person holds read the persons table with it): chunks of the size asked for, and a NUMERIC
    key arrives as a decimal on PostgreSQL too, not as ADBC's opaque type nothing downstream can pseudonymise."""

    import pyarrow as pa

    from zones.hot import HotReader, reflect

    eng = make_engine(backend["hot"])
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE people (pnr VARCHAR(12), pkey NUMERIC(12, 0), andrad TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO people VALUES (:p, :k, NULL)"),
                  [{"p": f"19640101{i:04d}", "k": 1000 + i} for i in range(23)])
    reader = HotReader(eng, reflect(eng, "people"), key=["pkey"], watermark="andrad")
    try:
        parts = list(reader.scan(["pnr", "pkey"], chunk=5))
    finally:
        reader.close()
        eng.dispose()
    assert [t.num_rows for t in parts] == [5, 5, 5, 5, 3]
    keys = pa.concat_tables(parts).column("pkey")
    assert pa.types.is_decimal(keys.type) or backend["name"] == "sqlite"  # SQLite stores NUMERIC as it likes
    assert sorted(int(v) for v in keys.to_pylist()) == list(range(1000, 1023))
