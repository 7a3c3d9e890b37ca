"""The cold zone against real SQLite/PostgreSQL hot stores, real Delta, real packages and the E-ARK validator."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import sqlalchemy as sa

from lifecycle import dispose, holds
from lifecycle.archive import archive
from lifecycle.cold_status import package_rows, run_audit, verify_and_receipt
from lifecycle.eark import validate_reference
from lifecycle.fixity import locate
from lifecycle.ledger import Ledger
from lifecycle.promote import promote
from lifecycle.purge import purge
from lifecycle.warm import WarmTable
from tests.conftest import write_project
from tests.test_fixity import _rewrite_tagmanifests
from tests.test_promote import seeded_project
from zones.config import Project, load
from zones.errors import TerminalError
from zones.hot import make_engine

SEEDED = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 2, tzinfo=UTC)
DS = ["individ", "utbetalning", "lakarintyg", "arende"]


def ready(backend: dict[str, str], tmp_path: Path) -> Project:
    project = seeded_project(backend, tmp_path, datasets=DS)
    for name in DS:
        promote(project, name, as_of=SEEDED + timedelta(hours=1))
    return project


def csv_of(pkg: dict[str, Any]) -> pa.Table:
    path = locate(Path(pkg["path"]))[0] / "representations" / "rep1" / "data" / f"{pkg['dataset']}.csv"
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def hot_table(project: Project, table: str) -> list[dict[str, Any]]:
    eng = make_engine(project.hot_url)
    with eng.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(sa.text(f"SELECT * FROM {table}"))]
    eng.dispose()
    return rows


def old_payer(project: Project) -> tuple[dict[str, Any], dict[str, Any]]:
    """A payment due for archive (warm keep P10Y) and the person it was paid to."""
    old = next(r for r in hot_table(project, "utbetalning") if str(r["utbetald"]) < "2015-06-01")
    return old, next(r for r in hot_table(project, "individ") if r["individ_id"] == old["individ_id"])


def test_archive_builds_valid_authentic_packages_then_deletes_warm(backend: dict[str, str], tmp_path: Path) -> None:
    project = ready(backend, tmp_path)
    warm_before = WarmTable(project.warm_table_uri("lakarintyg")).count()
    rep = archive(project, "lakarintyg", as_of=NOW, execute=True)
    ledger = Ledger(project.ledger_url)
    pkgs = package_rows(ledger, "lakarintyg")
    assert rep.rows_written == rep.rows_deleted == sum(p["rows"] for p in pkgs) > 0
    assert {p["period"] for p in pkgs} == {str(y) for y in range(2013, 2021)}  # warm keep P5Y: up to 2020
    assert WarmTable(project.warm_table_uri("lakarintyg")).count() == warm_before - rep.rows_deleted
    # authentic record: originals restored from the seals (full ICD-10 code, free text), keys raw
    hot = {r["intyg_id"]: r for r in hot_table(project, "lakarintyg")}
    t = csv_of(pkgs[0])
    for row in t.to_pylist()[:50]:
        src = hot[row["intyg_id"]]
        assert row["diagnoskod"] == src["diagnoskod"] and row["funktionsnedsattning"] == src["funktionsnedsattning"]
    # verified from storage, read-only, a valid E-ARK SIP (SIP14 is the validator's documented defect)
    pkg_dir = locate(Path(pkgs[0]["path"]))[0]
    assert not os.stat(pkg_dir / "METS.xml").st_mode & stat.S_IWUSR
    v = validate_reference(pkg_dir)
    assert v.available, f"the E-ARK reference validator (../shared/tools/eark-validate) must run here: {v.reason}"
    assert v.valid and v.errors == [] and v.accepted == ["SIP14"], v.output[-2000:]
    _, ok, files = verify_and_receipt(project, pkgs[0]["package_id"], tmp_path / "receipt")
    assert ok and all(f.is_file() for f in files)
    html = files[1].read_text()
    assert "Leveranskvitto / Transfer receipt" in html and pkgs[0]["package_id"] in html
    assert ledger.verify() == []
    # rerun: nothing new, nothing duplicated
    again = archive(project, "lakarintyg", as_of=NOW, execute=True)
    assert again.rows_written == 0 and len(package_rows(ledger, "lakarintyg")) == len(pkgs)


def test_lossy_unsealed_column_without_basis_cannot_be_archived(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["datasets"]["lakarintyg"]["columns"]["funktionsnedsattning"] = {"class": "special", "warm": "drop",
                                                                           "sealed": False}

    path = write_project(tmp_path, hot_url=f"sqlite:///{tmp_path}/h.db", ledger_url=f"sqlite:///{tmp_path}/l.db",
                         datasets=["lakarintyg"], edit=edit)
    with pytest.raises(TerminalError, match=r"funktionsnedsattning.*disposal \(gallring\).*sealed: true.*basis"):
        archive(load(path, env={}), "lakarintyg", as_of=NOW)


def test_holds_block_purge_warm_delete_and_disposal(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    pays = hot_table(project, "utbetalning")
    _, person = old_payer(project)
    mine = [r for r in pays if r["individ_id"] == person["individ_id"]]
    h_person = holds.add(project, ledger, dataset="utbetalning", person=person["personnummer"], reason="återkrav",
                         by="handläggare A")
    assert person["personnummer"] not in str(ledger.events(kind="hold.added").__next__())  # stored pseudonymised
    # purge skips the held person's rows; archive copies them but leaves them in warm
    p = purge(project, "utbetalning", as_of=NOW, execute=True)
    assert p.checks["rows_held"] > 0 and p.rows_deleted == p.checks["purgeable"]
    left = {r["utbetalning_id"] for r in hot_table(project, "utbetalning")}
    assert all(r["utbetalning_id"] in left for r in mine)
    a = archive(project, "utbetalning", as_of=NOW, execute=True)
    assert a.checks["rows_held"] > 0 and a.rows_deleted == a.rows_written - a.checks["rows_held"]
    # disposal: lakarintyg 2013-2015 are due; a period hold blocks 2014
    archive(project, "lakarintyg", as_of=NOW, execute=True)
    holds.add(project, ledger, dataset="lakarintyg", period="2014", reason="JO-granskning", by="arkivarie A")
    plan = dispose.plan(project, ledger, by="arkivarie A", as_of=NOW)
    due = {e["period"]: e for e in plan["packages"]}
    assert set(due) == {"2013", "2014", "2015"} and due["2014"]["holds"] and not due["2013"]["holds"]
    dispose.approve(ledger, plan["plan_id"], by="arkivarie B")
    done, refused = dispose.execute(project, ledger, plan["plan_id"])
    assert [r.package_id for r in refused] == [due["2014"]["package_id"]] and len(done) == 2
    assert Path(next(p for p in package_rows(ledger) if p["period"] == "2014" and p["dataset"] == "lakarintyg")
                ["path"]).exists()
    holds.release(ledger, h_person.hold_id, by="handläggare B")
    released = purge(project, "utbetalning", as_of=NOW, execute=True)
    assert released.rows_deleted == p.checks["rows_held"] and released.checks["rows_held"] == 0


def test_disposal_needs_a_second_person_and_leaves_proof(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    archive(project, "lakarintyg", as_of=NOW, execute=True)
    archive(project, "utbetalning", as_of=NOW, execute=True)
    plan = dispose.plan(project, ledger, by="Anna Arkivarie", as_of=NOW)
    assert {e["dataset"] for e in plan["packages"]} == {"lakarintyg"}  # utbetalning is preserved (RA-FS 2018:10)
    with pytest.raises(TerminalError, match="approved by a second person"):
        dispose.execute(project, ledger, plan["plan_id"])
    with pytest.raises(TerminalError, match="different person"):
        dispose.approve(ledger, plan["plan_id"], by="anna arkivarie")
    dispose.approve(ledger, plan["plan_id"], by="Bo Registrator")
    target = plan["packages"][0]
    path = Path(next(p["path"] for p in package_rows(ledger) if p["package_id"] == target["package_id"]))
    done, refused = dispose.execute(project, ledger, plan["plan_id"])
    assert refused == [] and target["package_id"] in done and not path.exists()
    with ledger.engine.connect() as c:
        proof = c.execute(sa.text("SELECT * FROM dz_disposals WHERE package_id = :p"),
                          {"p": target["package_id"]}).one()
    assert proof.mets_sha256 == target["mets_sha256"] and proof.basis == "RA-MS (test decision 2026:1)"
    assert (proof.planned_by, proof.approved_by, proof.state) == ("Anna Arkivarie", "Bo Registrator", "disposed")
    premis = Path(project.zone_uri("cold")) / "_disposals" / f"{target['package_id']}.premis.xml"
    assert "deletion" in premis.read_text() and target["mets_sha256"] in premis.read_text()
    assert dispose.verify_register(ledger) == [] and ledger.verify() == []
    with ledger.engine.begin() as c:  # the register is tamper-evident on its own
        c.execute(sa.text("UPDATE dz_disposals SET basis = 'none' WHERE seq = 1"))
    assert dispose.verify_register(ledger)


def test_a_disposal_plan_edited_after_it_was_made_or_approved_disposes_nothing(tmp_path: Path) -> None:
    """The log seals each plan (digest of its package list, planner, approver): editing the plan table cannot
    slip a package in, change a basis, or rename the planner to pass the four-eyes check."""
    import json

    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    archive(project, "lakarintyg", as_of=NOW, execute=True)
    plan = dispose.plan(project, ledger, by="A", as_of=NOW)
    assert len(plan["packages"]) >= 2
    paths = [Path(p["path"]) for p in package_rows(ledger, "lakarintyg")]
    with ledger.engine.begin() as c:  # the planner renamed in the table: A would approve A's own plan
        c.execute(sa.text("UPDATE dz_disposal_plans SET planned_by = 'Z' WHERE plan_id = :p"),
                  {"p": plan["plan_id"]})
    with pytest.raises(TerminalError, match="different person"):
        dispose.approve(ledger, plan["plan_id"], by="A")
    dispose.approve(ledger, plan["plan_id"], by="B")
    edited = [{**e, "basis": "a decision nobody approved"} for e in plan["packages"]]
    with ledger.engine.begin() as c:
        c.execute(sa.text("UPDATE dz_disposal_plans SET packages = :j WHERE plan_id = :p"),
                  {"j": json.dumps(edited), "p": plan["plan_id"]})
    with pytest.raises(TerminalError, match="not the plan that was made"):
        dispose.execute(project, ledger, plan["plan_id"])
    assert all(p.exists() for p in paths)
    with ledger.engine.begin() as c:  # put back as approved: it runs, with planner and approver from the log
        c.execute(sa.text("UPDATE dz_disposal_plans SET packages = :j WHERE plan_id = :p"),
                  {"j": json.dumps(plan["packages"]), "p": plan["plan_id"]})
    done, refused = dispose.execute(project, ledger, plan["plan_id"])
    assert refused == [] and len(done) == len(plan["packages"])
    with ledger.engine.connect() as c:
        who = set(c.execute(sa.text("SELECT planned_by, approved_by FROM dz_disposals")).all())
    assert who == {("A", "B")}


def test_a_plan_recorded_before_plans_were_sealed_still_runs_and_four_eyes_hold_at_execution(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A development ledger's plan whose events carry no digest is executed as before, with a warning; a plan
    whose log says one person made and approved it is refused at execution too."""
    import json

    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    archive(project, "lakarintyg", as_of=NOW, execute=True)
    entries = dispose.plan(project, ledger, by="A", as_of=NOW)["packages"]
    for plan_id, planner, approver in (("D-legacy", "A", "B"), ("D-alone", "C", "C")):
        with ledger.engine.begin() as c:  # as 0.1.0 development builds wrote them: no sha256 in the events
            c.execute(sa.text("INSERT INTO dz_disposal_plans (plan_id, as_of, planned_by, planned_at, status, "
                              "packages, approved_by) VALUES (:p, :t, :a, :t, 'approved', :j, :b)"),
                      {"p": plan_id, "t": NOW, "a": planner, "b": approver, "j": json.dumps(entries)})
            ledger.append("dispose.planned", conn=c, plan_id=plan_id, by=planner,
                          packages=[e["package_id"] for e in entries])
            ledger.append("dispose.approved", conn=c, plan_id=plan_id, by=approver)
    with pytest.raises(TerminalError, match="four-eyes"):
        dispose.execute(project, ledger, "D-alone")
    with caplog.at_level("WARNING", logger="datazones.dispose"):
        done, refused = dispose.execute(project, ledger, "D-legacy")
    assert refused == [] and len(done) == len(entries) and "before plans were sealed" in caplog.text


def test_audit_reports_modified_missing_and_extra_files(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    archive(project, "lakarintyg", as_of=NOW, execute=False)
    assert all(r["ok"] for r in run_audit(project))
    pkgs = package_rows(Ledger(project.ledger_url), "lakarintyg")
    d0, d1, d2 = (locate(Path(p["path"]))[0] for p in pkgs[:3])
    for d in (d0, d1, d2):
        os.chmod(d, 0o750)
        for sub in d.rglob("*"):
            os.chmod(sub, 0o750 if sub.is_dir() else 0o640)
    csv = d0 / "representations" / "rep1" / "data" / "lakarintyg.csv"
    data = bytearray(csv.read_bytes())
    data[-5] ^= 1
    csv.write_bytes(bytes(data))
    (d1 / "documentation" / next(iter(os.listdir(d1 / "documentation")))).unlink()
    (d2 / "schemas" / "extra.txt").write_text("not listed")
    bag3 = Path(pkgs[3]["path"])  # beside the payload, in the bag's own folder: in no manifest either
    os.chmod(bag3, 0o750)
    (bag3 / "notes.txt").write_text("not listed")
    results = {r["package_id"]: r for r in run_audit(project)}
    kinds = {pid: {p["problem"] for p in r["problems"]} for pid, r in results.items() if not r["ok"]}
    assert set(kinds) == {p["package_id"] for p in pkgs[:4]}
    assert [(p["path"], p["problem"]) for p in results[pkgs[3]["package_id"]]["problems"]] == [("notes.txt",
                                                                                               "extra")]
    assert "modified" in kinds[pkgs[0]["package_id"]] and "missing" in kinds[pkgs[1]["package_id"]]
    assert "extra" in kinds[pkgs[2]["package_id"]]
    bag4 = Path(pkgs[4]["path"])  # bag-info.txt edited and its tagmanifests redone: only the ledger sees it
    os.chmod(bag4, 0o750)
    for f in bag4.glob("*.txt"):
        os.chmod(f, 0o640)
    (bag4 / "bag-info.txt").write_text((bag4 / "bag-info.txt").read_text() + "External-Identifier: forged\n")
    _rewrite_tagmanifests(bag4)
    forged = next(r for r in run_audit(project) if r["package_id"] == pkgs[4]["package_id"])
    assert ("bag-info.txt", "modified") in {(p["path"], p["problem"]) for p in forged["problems"]}
    receipt, ok, _ = verify_and_receipt(project, pkgs[4]["package_id"], tmp_path / "receipt")
    assert not ok and not receipt.data["verdict"]["accepted"]
    bad = next(p for p in results[pkgs[0]["package_id"]]["problems"] if p["problem"] == "modified")
    assert bad["path"].endswith("lakarintyg.csv") and bad["expected"] != bad["found"]
    assert (Path(pkgs[0]["path"]).parent / f"{pkgs[0]['package_id']}.audit.premis.xml").is_file()


def test_warm_and_cold_hold_every_promoted_row_once(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    hot_ids = sorted(r["utbetalning_id"] for r in hot_table(project, "utbetalning"))
    archive(project, "utbetalning", as_of=NOW, execute=True)
    purge(project, "utbetalning", as_of=NOW, execute=True)
    assert_once(project, "utbetalning", "utbetalning_id", hot_ids)


def assert_once(project: Project, dataset: str, key: str, ids: list[int]) -> None:
    """Every id is in warm or in a verified cold package — exactly once across both."""
    warm = WarmTable(project.warm_table_uri(dataset)).to_arrow(columns=[key]).column(key).to_pylist()
    cold: list[int] = []
    for p in package_rows(Ledger(project.ledger_url), dataset):
        if p["status"] == "verified":
            cold += [int(v) for v in pc.cast(csv_of(p).column(key), pa.int64()).to_pylist()]
    both = sorted(warm + cold)
    assert both == sorted(ids), f"{len(set(ids) - set(both))} lost, {len(both) - len(set(both))} duplicated"


def test_content_hash_is_the_documented_order_independent_digest() -> None:
    import hashlib

    from lifecycle.archive import content_hash

    t = pa.table({"a": ["1", "2", "", None], "b": ["x", None, "z", "w"]})
    lines = ["\x1f".join("\x1e" if v is None else v for v in row.values()) for row in t.to_pylist()]
    want = hashlib.sha256("".join(sorted(hashlib.sha256(s.encode()).hexdigest() for s in lines)).encode())
    assert content_hash(t) == want.hexdigest() == content_hash(t.take(pa.array([3, 1, 0, 2])))
    assert content_hash(t) != content_hash(t.slice(0, 3))


def test_disposal_waits_for_its_date_a_hold_names_a_real_period_and_proof_follows_deletion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: a plan could look ahead (as-of in the future) and execute disposed packages years early;
    a hold on a period in the wrong form held nothing; the PREMIS deletion proof was written before the deletion,
    so a crash followed by a hold left a proof of a deletion that never happened; and `verify` exited 0 for a
    receipt that says NOT ACCEPTED."""
    from zones.errors import ConfigError

    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    archive(project, "lakarintyg", as_of=NOW, execute=True)
    with pytest.raises(TerminalError, match="cannot look ahead"):
        dispose.plan(project, ledger, by="A", as_of=datetime.now(UTC) + timedelta(days=365 * 10))
    with pytest.raises(ConfigError, match="would hold nothing"):
        holds.add(project, ledger, dataset="lakarintyg", period="2014-03", reason="JO", by="A")
    plan = dispose.plan(project, ledger, by="A", as_of=NOW)
    dispose.approve(ledger, plan["plan_id"], by="B")
    first, second, *rest = sorted(plan["packages"], key=lambda e: e["period"])
    with ledger.engine.begin() as c:  # the package's disposal date moved after planning (a changed rule)
        c.execute(sa.text("UPDATE dz_packages SET dispose_after = '2099-12-31' WHERE package_id = :p"),
                  {"p": second["package_id"]})

    def crash(point: str) -> None:  # the process dies right after the register entry of the first package
        if point == "dispose_after_proof":
            raise SystemExit(137)

    with monkeypatch.context() as m, pytest.raises(SystemExit):
        m.setattr(dispose, "fault", crash)
        dispose.execute(project, ledger, plan["plan_id"])
    premis = Path(project.zone_uri("cold")) / "_disposals" / f"{first['package_id']}.premis.xml"
    assert not premis.exists()  # no proof of a deletion that has not happened
    held = holds.add(project, ledger, dataset="lakarintyg", period=first["period"], reason="JO", by="A")
    done, refused = dispose.execute(project, ledger, plan["plan_id"])
    why = {r.package_id: r.reason for r in refused}
    assert why[first["package_id"]] == f"held by {held.hold_id}" and "not due" in why[second["package_id"]]
    assert set(done) == {e["package_id"] for e in rest} and not premis.exists()
    with ledger.engine.connect() as c:
        states = dict(c.execute(sa.text("SELECT package_id, state FROM dz_disposals")).all())
    assert states[first["package_id"]] == "withdrawn" and second["package_id"] not in states
    paths = {p["package_id"]: Path(p["path"]) for p in package_rows(ledger)}
    assert paths[first["package_id"]].exists() and paths[second["package_id"]].exists()
    assert dispose.verify_register(ledger) == [] and ledger.verify() == []
    import shutil

    copy = tmp_path / "copy" / "unknown.bag"  # a copy the ledger does not know
    shutil.copytree(paths[first["package_id"]], copy)
    receipt, ok, _ = verify_and_receipt(project, str(copy), tmp_path / "r")
    assert not receipt.data["verdict"]["accepted"] and ok is False  # nothing to reconcile it with


@pytest.mark.parametrize("point", ["archive_after_verified", "archive_after_warm_delete"])
def test_an_archive_rerun_finishes_what_a_crash_cut_short(point: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: after a crash between a package's ledger entry and making it read-only it stayed
    writable; after a crash between the warm delete and its ledger record the delete was never recorded (the
    rows are gone, so the rerun found nothing to do). The rerun now completes both."""
    from lifecycle import archive_steps

    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)

    def crash(at: str) -> None:
        if at == point:
            raise SystemExit(137)

    with monkeypatch.context() as m, pytest.raises(SystemExit):
        m.setattr(archive_steps, "fault", crash)
        archive(project, "lakarintyg", as_of=NOW, execute=True, reference_validator=False)
    first = package_rows(ledger, "lakarintyg")[0]
    assert first["warm_deleted_at"] is None
    archive(project, "lakarintyg", as_of=NOW, execute=True, reference_validator=False)
    pkgs = {p["package_id"]: p for p in package_rows(ledger, "lakarintyg")}
    again = pkgs[first["package_id"]]
    assert again["warm_deleted_at"] is not None and again["rows_deleted"] == again["rows"]
    assert all(p["warm_deleted_at"] is not None for p in pkgs.values())
    for p in pkgs.values():
        mets = locate(Path(p["path"]))[0] / "METS.xml"
        assert not os.stat(mets).st_mode & stat.S_IWUSR, p["package_id"]
    deleted = [e["payload"] for e in ledger.events(kind="archive.warm_deleted")
               if e["batch_id"] == first["package_id"]]
    assert len(deleted) == 1 and deleted[0]["rows_deleted"] == again["rows"]
    assert ledger.verify() == []


def test_rows_a_released_hold_kept_in_warm_leave_it_on_the_next_archive(tmp_path: Path) -> None:
    """A hold keeps archived rows in warm; once it is released, the next archive run deletes them — they are
    exactly the verified package's rows — instead of leaving them in warm for good."""
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    hold = holds.add(project, ledger, dataset="lakarintyg", period="2013", reason="JO-granskning", by="A")
    archive(project, "lakarintyg", as_of=NOW, execute=True, reference_validator=False)

    def in_warm_2013() -> int:
        t = WarmTable(project.warm_table_uri("lakarintyg")).to_arrow(columns=["utfardat"])
        return sum(1 for d in t.column(0).to_pylist() if d is not None and d.year == 2013)

    pkg = next(p for p in package_rows(ledger, "lakarintyg") if p["period"] == "2013")
    assert in_warm_2013() == pkg["rows"] > 0 and pkg["rows_deleted"] == 0  # held: archived, kept
    archive(project, "lakarintyg", as_of=NOW, execute=True, reference_validator=False)
    assert in_warm_2013() == pkg["rows"]  # still held: still kept, and not packaged again
    events = [e for e in ledger.events(kind="archive.warm_deleted") if e["batch_id"] == pkg["package_id"]]
    assert len(events) == 1  # a rerun that deletes nothing while the hold lasts records nothing new
    holds.release(ledger, hold.hold_id, by="B")
    archive(project, "lakarintyg", as_of=NOW, execute=True, reference_validator=False)
    assert in_warm_2013() == 0
    after = [p for p in package_rows(ledger, "lakarintyg") if p["period"] == "2013"]
    assert [(p["package_id"], p["rows_deleted"]) for p in after] == [(pkg["package_id"], pkg["rows"])]
    assert ledger.verify() == []


def test_rows_a_person_hold_kept_in_warm_are_never_packaged_twice(tmp_path: Path) -> None:
    """A hold on one person keeps that person's archived rows in warm: later archive runs leave them to the package
    that holds them (a late row of the same period gets a package of its own, without them), and once the hold is
    released they leave warm under that first package. Every archived row is in exactly one package."""
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    pays = hot_table(project, "utbetalning")
    old, person = old_payer(project)
    hold = holds.add(project, ledger, dataset="utbetalning", person=person["personnummer"], reason="återkrav",
                     by="handläggare A")
    first = archive(project, "utbetalning", as_of=NOW, execute=True, reference_validator=False)
    held = first.checks["rows_held"]
    assert held > 0 and first.rows_deleted == first.rows_written - held
    before = {p["package_id"]: p["rows"] for p in package_rows(ledger, "utbetalning")}

    again = archive(project, "utbetalning", as_of=NOW, execute=True, reference_validator=False)
    assert {p["package_id"]: p["rows"] for p in package_rows(ledger, "utbetalning")} == before  # nothing new
    assert again.rows_written == 0 and again.checks["rows_archived_before"] == held and again.rows_deleted == 0

    other = next(r for r in pays if r["individ_id"] != old["individ_id"] and str(r["utbetald"])[:4] ==
                 str(old["utbetald"])[:4])
    eng = make_engine(project.hot_url)  # a late payment to someone else in the held row's period
    table = sa.Table("utbetalning", sa.MetaData(), autoload_with=eng)
    late_id = max(r["utbetalning_id"] for r in pays) + 1
    with eng.begin() as c:
        row = c.execute(table.select().where(table.c.utbetalning_id == other["utbetalning_id"])).one()._asdict()
        c.execute(table.insert().values({**row, "utbetalning_id": late_id, "andrad": SEEDED + timedelta(hours=2)}))
    eng.dispose()
    promote(project, "utbetalning", as_of=SEEDED + timedelta(hours=3))
    late = archive(project, "utbetalning", as_of=NOW, execute=True, reference_validator=False)
    added = [p for p in package_rows(ledger, "utbetalning") if p["package_id"] not in before]
    assert [p["rows"] for p in added] == [1] and late.rows_written == 1 and late.rows_deleted == 1
    assert csv_of(added[0]).column("utbetalning_id").to_pylist() == [late_id]

    holds.release(ledger, hold.hold_id, by="handläggare B")
    freed = archive(project, "utbetalning", as_of=NOW, execute=True, reference_validator=False)
    assert freed.rows_deleted == held and freed.rows_written == 0 and freed.checks["rows_held"] == 0
    after = package_rows(ledger, "utbetalning")
    assert len(after) == len(before) + 1 and all(p["rows_deleted"] == p["rows"] for p in after)
    ids = [i for p in after for i in csv_of(p).column("utbetalning_id").to_pylist()]
    assert len(ids) == len(set(ids))  # no row in two packages
    assert ledger.verify() == []


def test_held_rows_deleted_after_release_are_recorded_after_a_crash_and_a_bad_package_decides_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Held rows leave warm under the package that holds them only if that package still verifies (a missing or
    altered package stops the run: warm keeps the rows, nothing is packaged again); a crash between their delete
    and its ledger entry is completed by the next run."""
    import lifecycle.archive_steps as steps
    from zones.errors import IntegrityError

    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    _, person = old_payer(project)
    hold = holds.add(project, ledger, dataset="utbetalning", person=person["personnummer"], reason="återkrav",
                     by="A")
    held = archive(project, "utbetalning", as_of=NOW, execute=True, reference_validator=False).checks["rows_held"]
    before = {p["package_id"]: (p["rows"], p["rows_deleted"]) for p in package_rows(ledger, "utbetalning")}
    warm_rows = WarmTable(project.warm_table_uri("utbetalning")).count()
    owner = next(p for p in package_rows(ledger, "utbetalning") if p["rows_deleted"] < p["rows"])
    bag = Path(owner["path"])
    csv = locate(bag)[0] / "representations" / "rep1" / "data" / "utbetalning.csv"
    for damage, why in (("move", "METS.xml: missing"), ("edit", "utbetalning.csv: ")):
        if damage == "move":
            bag.rename(bag.with_name("elsewhere"))
        else:
            os.chmod(csv, 0o640)
            text = csv.read_bytes()  # bytes: the CSV's CRLF line ends must come back exactly
            csv.write_bytes(text.replace(b",", b";", 1))
        with pytest.raises(IntegrityError, match=why):
            archive(project, "utbetalning", as_of=NOW, execute=True, reference_validator=False)
        assert WarmTable(project.warm_table_uri("utbetalning")).count() == warm_rows
        assert {p["package_id"]: (p["rows"], p["rows_deleted"]) for p in package_rows(ledger, "utbetalning")} \
            == before
        if damage == "move":
            bag.with_name("elsewhere").rename(bag)
        else:
            csv.write_bytes(text)

    holds.release(ledger, hold.hold_id, by="B")

    def crash(point: str) -> None:
        if point == "archive_after_warm_delete":
            raise SystemExit("killed after the Delta delete, before the ledger heard of it")

    with monkeypatch.context() as m:
        m.setattr(steps, "fault", crash)
        with pytest.raises(SystemExit):
            archive(project, "utbetalning", as_of=NOW, execute=True, reference_validator=False)
    assert WarmTable(project.warm_table_uri("utbetalning")).count() < warm_rows  # Delta has it, the ledger not
    archive(project, "utbetalning", as_of=NOW, execute=True, reference_validator=False)
    after = package_rows(ledger, "utbetalning")
    assert len(after) == len(before) and all(p["rows_deleted"] == p["rows"] for p in after)
    events = [e for e in ledger.events(kind="archive.warm_deleted") if e["batch_id"] == owner["package_id"]]
    assert sum(e["payload"]["rows_deleted"] for e in events) == owner["rows"]
    assert any(e["payload"].get("recovered") for e in events) and held > 0
    assert ledger.verify() == []
