"""Promotion when the ledger or the warm table went missing: nothing is skipped silently, nothing doubles."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lifecycle.ledger import Ledger
from lifecycle.promote import promote
from lifecycle.reconcile import reconcile
from lifecycle.warm import WarmTable
from tests.helpers import assert_warm_matches_hot
from tests.test_promote import AS_OF, seeded_project
from zones.errors import TerminalError
from zones.hot import make_engine

DS = "beslut"


def _touch(project: object, value: int, at: str) -> None:
    eng = make_engine(project.hot_url)  # type: ignore[attr-defined]
    with eng.begin() as c:
        c.execute(sa.text("UPDATE beslut SET sgi_sek = :v, andrad = :t WHERE beslut_id = (SELECT min(beslut_id) "
                          "FROM beslut)"), {"v": value, "t": at})
    eng.dispose()


def test_a_lost_ledger_re_merges_every_row_instead_of_skipping_batches(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = seeded_project(backend, tmp_path, datasets=[DS])
    first = promote(project, DS, as_of=AS_OF, batch_rows=1000)
    assert first.batches >= 2
    _touch(project, 999_999, (AS_OF + timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S"))
    (tmp_path / "ledger.db").unlink()  # the ledger is lost; warm keeps its Delta app transactions 1..n
    again = promote(project, DS, as_of=AS_OF + timedelta(hours=1), batch_rows=1000)
    assert again.mode == "full-merge" and again.rows_written == again.rows_read > 0
    assert again.rows_unchanged == again.rows_read - 1  # only the edited row changed warm
    assert assert_warm_matches_hot(project, DS) == first.rows_written  # the edit landed, no row doubled
    ledger = Ledger(project.ledger_url)
    adopted = ledger.last_batch(DS, status="adopted")
    assert adopted is not None and adopted["seq"] == first.batches
    assert reconcile(ledger) == [] and ledger.verify() == []
    _touch(project, 123, (AS_OF + timedelta(hours=1, minutes=10)).strftime("%Y-%m-%d %H:%M:%S"))
    inc = promote(project, DS, as_of=AS_OF + timedelta(hours=2))
    assert inc.mode == "incremental" and inc.rows_written >= 1
    assert assert_warm_matches_hot(project, DS) == first.rows_written


def test_a_missing_warm_table_is_refused_then_rebuilt_on_request(backend: dict[str, str], tmp_path: Path) -> None:
    project = seeded_project(backend, tmp_path, datasets=[DS])
    first = promote(project, DS, as_of=AS_OF)
    uri = Path(project.warm_table_uri(DS))
    shutil.rmtree(uri)
    with pytest.raises(TerminalError, match=r"warm table beslut is missing .* --rebuild"):
        promote(project, DS, as_of=AS_OF + timedelta(hours=1))
    assert not uri.exists()  # refused before anything was written
    rebuilt = promote(project, DS, as_of=AS_OF + timedelta(hours=1), rebuild=True)
    assert rebuilt.mode == "full" and rebuilt.rows_written == first.rows_written
    assert assert_warm_matches_hot(project, DS) == first.rows_written
    assert WarmTable(str(uri)).count() == first.rows_written
    ledger = Ledger(project.ledger_url)
    assert reconcile(ledger) == [] and ledger.verify() == []
    assert promote(project, DS, as_of=AS_OF + timedelta(hours=2)).mode == "incremental"


@pytest.mark.parametrize("value", ["{pnr}", "handläggare byttes, se {short}"])
def test_an_undeclared_column_holding_personnummer_stops_before_warm(backend: dict[str, str], tmp_path: Path,
                                                                    value: str) -> None:
    """on_new_column: add copies an undeclared hot column as it is, so a column of identity numbers (or free text
    quoting one) would reach warm raw: the batch is refused instead, nothing written, the number never echoed."""
    from tests.conftest import TEST_NUMBERS
    from zones.errors import SchemaChangeError

    pnr = TEST_NUMBERS.read_text().split()[500]
    project = seeded_project(backend, tmp_path, datasets=[DS])
    promote(project, DS, as_of=AS_OF)
    eng = make_engine(project.hot_url)
    with eng.begin() as c:
        c.execute(sa.text("ALTER TABLE beslut ADD COLUMN handlaggare TEXT"))
        c.execute(sa.text("UPDATE beslut SET handlaggare = 'A. Andersson'"))
    eng.dispose()
    _touch(project, 1, (AS_OF + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S"))
    clean = promote(project, DS, as_of=AS_OF + timedelta(hours=1))  # a harmless new column is added
    assert "handlaggare" in WarmTable(project.warm_table_uri(DS)).schema().names and clean.rows_written >= 1
    version = WarmTable(project.warm_table_uri(DS)).version()
    eng = make_engine(project.hot_url)
    with eng.begin() as c:
        c.execute(sa.text("UPDATE beslut SET handlaggare = :v, andrad = :t WHERE beslut_id IN (SELECT beslut_id "
                          "FROM beslut ORDER BY beslut_id LIMIT 3)"),
                  {"v": value.format(pnr=pnr, short=f"{pnr[2:8]}-{pnr[8:]}"),
                   "t": (AS_OF + timedelta(hours=1, minutes=5)).strftime("%Y-%m-%d %H:%M:%S")})
    eng.dispose()
    with pytest.raises(SchemaChangeError, match=r"handlaggare.*personnummer.*nothing of this batch") as err:
        promote(project, DS, as_of=AS_OF + timedelta(hours=2))
    assert pnr not in str(err.value) and pnr[2:8] not in str(err.value)
    assert WarmTable(project.warm_table_uri(DS)).version() == version
    found = WarmTable(project.warm_table_uri(DS)).to_arrow(columns=["handlaggare"]).column(0).to_pylist()
    assert not any(pnr[2:8] in (v or "") for v in found)


def test_a_watermark_in_the_future_stops_the_run_instead_of_skipping_forever(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = seeded_project(backend, tmp_path, datasets=[DS])
    promote(project, DS, as_of=AS_OF)
    ledger = Ledger(project.ledger_url)
    with ledger.engine.begin() as c:
        c.execute(sa.text("UPDATE dz_watermarks SET watermark = '2099-01-01T00:00:00+00:00'"))
    assert promote(project, DS, as_of=AS_OF + timedelta(hours=1)).mode == "noop"  # an explicit past as-of
    with pytest.raises(TerminalError, match=r"watermark of beslut \(2099-01-01.*later than this run's as-of"):
        promote(project, DS)  # now: the watermark cannot be ahead of it
    assert any("no committed batch that set it" in p for p in reconcile(ledger))


def test_a_ledger_restored_from_a_backup_taken_during_the_first_full_load_does_not_resume_it(tmp_path: Path) -> None:
    """The restored ledger's last page is an unfinished full load, but Delta holds every page since: resuming the
    append from that cursor would double every later row; the run adopts Delta's batches and merges instead."""
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = seeded_project(backend, tmp_path, datasets=[DS])
    first = promote(project, DS, as_of=AS_OF, batch_rows=500)
    assert first.batches >= 4
    ledger = Ledger(project.ledger_url)
    with ledger.engine.begin() as c:  # as the backup taken after page 2 holds it
        c.execute(sa.text("DELETE FROM dz_batches WHERE seq > 2"))
        c.execute(sa.text("DELETE FROM dz_watermarks"))
    again = promote(project, DS, as_of=AS_OF + timedelta(hours=1), batch_rows=500)
    assert again.mode == "full-merge" and again.rows_unchanged == again.rows_read
    assert assert_warm_matches_hot(project, DS) == first.rows_written


def test_rebuild_all_still_resumes_an_unfinished_first_load_where_it_stopped(tmp_path: Path) -> None:
    """`--rebuild` is for a warm table that went missing; given with `--all`, it must not make a dataset whose first
    full load was cut off start over as a merge of every row: that one resumes after its last committed page."""
    import json

    from tests.test_cli import zones

    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = seeded_project(backend, tmp_path, datasets=[DS])
    at = AS_OF.isoformat()
    env = {"DATAZONES_FAULT": "after_ledger_commit:2"}
    crashed = zones("promote", DS, "--as-of", at, "--batch-rows", "500", cwd=tmp_path, env=env)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    before = WarmTable(project.warm_table_uri(DS)).count()
    assert before == 1000
    res = zones("promote", "--all", "--rebuild", "--as-of", at, "--batch-rows", "500", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)[0]
    assert report["mode"] == "full" and report["rows_read"] == report["rows_written"]
    assert assert_warm_matches_hot(project, DS) == before + report["rows_written"]
