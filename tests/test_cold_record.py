"""The archivist's record: disposal follows the rule in force, a plan runs once, and `ledger verify` catches the
ledger's tables (holds, watermarks, packages, the disposal register) edited behind the log's back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lifecycle import dispose, holds
from lifecycle.archive import archive
from lifecycle.cold_status import package_rows, package_status, verify_and_receipt
from lifecycle.ledger import GENESIS, Ledger
from lifecycle.reconcile import reconcile
from tests.conftest import TEST_NUMBERS, write_project
from tests.test_cli import zones
from tests.test_cold import NOW, ready
from zones.config import Project, load
from zones.errors import TerminalError
from zones.hot import make_engine


def _sqlite(tmp_path: Path) -> dict[str, str]:
    return {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}


def _reconfigure(tmp_path: Path, backend: dict[str, str], cold: dict[str, Any]) -> Project:
    """zones.yaml rewritten in place (same zones) with lakarintyg's cold rule changed."""
    def edit(raw: dict[str, Any]) -> None:
        raw["datasets"]["lakarintyg"]["retention"]["cold"] = cold

    path = write_project(tmp_path, hot_url=backend["hot"], ledger_url=backend["ledger"],
                         datasets=["individ", "utbetalning", "lakarintyg", "arende"], edit=edit)
    return load(path, env={})


def _approved(tmp_path: Path) -> tuple[dict[str, str], Project, Ledger, dict[str, Any]]:
    """lakarintyg promoted and archived on SQLite, and a disposal plan by A approved by B."""
    backend = _sqlite(tmp_path)
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    archive(project, "lakarintyg", as_of=NOW, execute=True)
    plan = dispose.plan(project, ledger, by="A", as_of=NOW)
    dispose.approve(ledger, plan["plan_id"], by="B")
    return backend, project, ledger, plan


def test_disposal_follows_the_rule_in_force_not_the_one_recorded_at_archiving(tmp_path: Path) -> None:
    backend, _, ledger, approved = _approved(tmp_path)
    assert len(approved["packages"]) >= 2
    paths = [Path(p["path"]) for p in package_rows(ledger, "lakarintyg")]

    preserved = _reconfigure(tmp_path, backend, {"action": "preserve"})
    plan = dispose.plan(preserved, ledger, by="A", as_of=NOW)
    assert plan["packages"] == [] and len(plan["preserved_now"]) == len(paths)
    assert all("rule in force is preserve" in k["reason"] for k in plan["preserved_now"])
    assert {r["rule"] for r in package_status(preserved) if r["dataset"] == "lakarintyg"} == {"preserve"}
    done, refused = dispose.execute(preserved, ledger, approved["plan_id"])  # approved under the old rule
    assert done == [] and len(refused) == len(approved["packages"]) and all(p.exists() for p in paths)

    other = _reconfigure(tmp_path, backend, {"action": "dispose", "after": "P10Y", "basis": "RA-FS 2021:6 bil. 3"})
    entries = dispose.plan(other, ledger, by="A", as_of=NOW)["packages"]
    assert {e["basis"] for e in entries} == {"RA-FS 2021:6 bil. 3"}
    assert {e["archived_under"] for e in entries} == {"RA-MS (test decision 2026:1)"}
    longer = _reconfigure(tmp_path, backend, {"action": "dispose", "after": "P60Y", "basis": "RA-MS 2026:1"})
    assert dispose.plan(longer, ledger, by="A", as_of=NOW)["packages"] == []  # not due under the rule in force


def test_nothing_is_disposed_under_a_basis_marked_as_a_placeholder(tmp_path: Path) -> None:
    backend, _, ledger, approved = _approved(tmp_path)
    paths = [Path(p["path"]) for p in package_rows(ledger, "lakarintyg")]
    assert len(approved["packages"]) >= 2

    example = _reconfigure(tmp_path, backend, {"action": "dispose", "after": "P10Y", "basis": "RA-MS (Placeholder)"})
    plan = dispose.plan(example, ledger, by="A", as_of=NOW)
    assert plan["packages"] == [] and len(plan["preserved_now"]) == len(approved["packages"])
    assert all("marked as a placeholder" in k["reason"] and "retention.cold.basis" in k["reason"]
               for k in plan["preserved_now"])
    states = {r["state"] for r in package_status(example) if r["dataset"] == "lakarintyg"}
    assert "due for disposal" not in states and any("placeholder" in s for s in states)
    done, refused = dispose.execute(example, ledger, approved["plan_id"])  # approved while a decision was cited
    assert done == [] and all("placeholder" in r.reason for r in refused) and all(p.exists() for p in paths)
    res = zones("validate", "--json", cwd=tmp_path)
    warned = [f for f in json.loads(res.stdout) if f["key_path"] == "datasets.lakarintyg.retention.cold.basis"]
    assert len(warned) == 1 and warned[0]["level"] == "warning" and res.returncode == 0


def test_a_plan_runs_once_and_a_package_refused_for_a_hold_needs_a_new_approval(tmp_path: Path) -> None:
    project = ready(_sqlite(tmp_path), tmp_path)
    ledger = Ledger(project.ledger_url)
    archive(project, "lakarintyg", as_of=NOW, execute=True)
    h = holds.add(project, ledger, dataset="lakarintyg", period="2014", reason="JO-granskning", by="A")
    plan = dispose.plan(project, ledger, by="A", as_of=NOW)
    dispose.approve(ledger, plan["plan_id"], by="B")
    done, refused = dispose.execute(project, ledger, plan["plan_id"])
    held = next(e for e in plan["packages"] if e["period"] == "2014")
    assert [r.package_id for r in refused] == [held["package_id"]] and done
    holds.release(ledger, h.hold_id, by="C")
    with ledger.engine.begin() as c:  # the plan table put back to "approved" does not reopen it: the log closed it
        c.execute(sa.text("UPDATE dz_disposal_plans SET status = 'approved' WHERE plan_id = :p"),
                  {"p": plan["plan_id"]})
    with pytest.raises(TerminalError, match="a plan runs once"):
        dispose.execute(project, ledger, plan["plan_id"])
    still = next(p for p in package_rows(ledger) if p["package_id"] == held["package_id"])
    assert still["status"] == "verified" and Path(still["path"]).exists()
    with pytest.raises(TerminalError, match=r"was disposed \(gallrad\) at .* under RA-MS \(test decision 2026:1\).*"
                                            r"approved by B.*premis\.xml"):
        verify_and_receipt(project, done[0], None)


def _rechain_register(ledger: Ledger) -> None:
    """Rewrite the register's hash chain end to end, as whoever edits a row and knows the (public) scheme can."""
    cols = ("seq", "package_id", "dataset", "period", "mets_sha256", "rows", "basis", "plan_id", "planned_by",
            "approved_by", "executed_at")
    prev = GENESIS
    with ledger.engine.begin() as c:
        for r in c.execute(sa.text("SELECT * FROM dz_disposals ORDER BY seq")).all():
            body = {k: getattr(r, k) for k in cols}
            h = hashlib.sha256((prev + json.dumps(body, sort_keys=True)).encode()).hexdigest()
            c.execute(sa.text("UPDATE dz_disposals SET prev_hash = :p, hash = :h WHERE seq = :s"),
                      {"p": prev, "h": h, "s": r.seq})
            prev = h


def test_ledger_verify_catches_holds_watermarks_packages_and_register_edited_behind_the_log(tmp_path: Path) -> None:
    _, project, ledger, plan = _approved(tmp_path)
    done, _ = dispose.execute(project, ledger, plan["plan_id"])
    h = holds.add(project, ledger, dataset="lakarintyg", period="2016", reason="överklagande", by="A")
    assert reconcile(ledger) == [] and ledger.verify() == []
    ok = zones("ledger", "verify", "--json", cwd=tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout)["tables"] == []

    def run(sql: str, **params: Any) -> list[str]:
        with ledger.engine.begin() as c:
            c.execute(sa.text(sql), params)
        return reconcile(ledger)

    # the proof of disposal rewritten (approver, basis) and re-chained: the log's anchor still catches it
    run("UPDATE dz_disposals SET approved_by = 'A', basis = 'RA-FS 2099:1' WHERE seq = 1")
    _rechain_register(ledger)
    assert dispose.verify_register(ledger) == []  # the register's own chain is consistent again ...
    found = reconcile(ledger)
    assert any("not the entry the log anchored" in p for p in found)  # ... the log is not fooled
    assert any("planner/approver" in p for p in found) and any("basis, plan" in p for p in found)
    bad = zones("ledger", "verify", "--json", cwd=tmp_path)
    assert bad.returncode == 1 and any("not the entry the log anchored" in t for t in json.loads(bad.stdout)["tables"])

    # the other tables, tampered one after another
    for sql, expect in (
        ("UPDATE dz_watermarks SET watermark = '2030-01-01T00:00:00+00:00' WHERE dataset = 'arende'",
         "no committed batch that set it"),
        ("DELETE FROM dz_watermarks WHERE dataset = 'individ'", "reload the whole table"),
        ("UPDATE dz_packages SET status = 'verified' WHERE package_id = :p", "records its disposal"),
        ("DELETE FROM dz_disposals WHERE seq = (SELECT max(seq) FROM dz_disposals)", "register entry was deleted"),
    ):
        assert any(expect in p for p in run(sql, p=done[0])), expect

    # a hold deleted behind the log still holds: every delete consults the log too
    assert any("its row was deleted" in p for p in run("DELETE FROM dz_holds WHERE hold_id = :h", h=h.hold_id))
    assert h.hold_id in {x.hold_id for x in holds.active(ledger, "lakarintyg")}
    assert any(h.hold_id in r["state"] for r in package_status(project) if r["period"] == "2016"
               and r["dataset"] == "lakarintyg")


def test_a_person_hold_set_after_a_key_rotation_covers_rows_promoted_under_the_old_key(tmp_path: Path) -> None:
    """Warm keeps rows under the key they were promoted with; a hold names its person under today's key. Archiving
    must still find and keep every held row, whatever key it carries."""
    import secrets

    import pyarrow.compute as pc

    from lifecycle.protect import load_keys
    from lifecycle.warm import WarmTable
    from tests.conftest import PSEUDONYM_KEY, SEAL_KEY
    from tests.test_cold import old_payer

    project = ready(_sqlite(tmp_path), tmp_path)  # everything promoted under the first key
    ledger = Ledger(project.ledger_url)
    rotated = load_keys({"DATAZONES_PSEUDONYM_KEY": secrets.token_hex(32), "DATAZONES_SEAL_KEY": SEAL_KEY,
                         "DATAZONES_PSEUDONYM_KEYS_RETIRED": PSEUDONYM_KEY}, need_seal=True)
    old, person = old_payer(project)
    h = holds.add(project, ledger, dataset="utbetalning", person=person["personnummer"], reason="återkrav",
                  by="handläggare A", keys=rotated)
    warm = WarmTable(project.warm_table_uri("utbetalning"))
    before = warm.count()
    people = holds.resolve_people(project, [h], rotated, zone="warm")[h.person]
    mine = warm.to_arrow(columns=["individ_id"]).column("individ_id")
    held_rows = int(pc.sum(pc.is_in(mine, value_set=people)).as_py() or 0)
    assert held_rows > 0  # the person's rows, promoted under the retired key, are found
    rep = archive(project, "utbetalning", as_of=NOW, execute=True, keys=rotated)
    assert rep.checks["rows_held"] > 0
    assert WarmTable(project.warm_table_uri("utbetalning")).count() == before - rep.rows_deleted
    left = WarmTable(project.warm_table_uri("utbetalning")).to_arrow(columns=["individ_id"]).column("individ_id")
    assert int(pc.sum(pc.is_in(left, value_set=people)).as_py() or 0) == held_rows  # none of them deleted
    assert old["utbetalning_id"] is not None


def test_a_disposal_withdrawn_under_one_plan_and_done_under_another_names_the_plan_that_did_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The register keeps the withdrawn entry and adds the one that disposed, each with its own plan and people;
    a crash after the delete is completed by the rerun even if zones.yaml changed meanwhile."""
    backend = _sqlite(tmp_path)
    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    archive(project, "lakarintyg", as_of=NOW, execute=True)
    p1 = dispose.plan(project, ledger, by="A", as_of=NOW)
    dispose.approve(ledger, p1["plan_id"], by="B")
    first, second, *_ = sorted(p1["packages"], key=lambda e: e["period"])

    def crash_after(point: str) -> Any:
        def f(name: str) -> None:
            if name == point:
                raise SystemExit(137)
        return f

    with monkeypatch.context() as m, pytest.raises(SystemExit):
        m.setattr(dispose, "fault", crash_after("dispose_after_proof"))
        dispose.execute(project, ledger, p1["plan_id"])
    h = holds.add(project, ledger, dataset="lakarintyg", period=first["period"], reason="JO", by="A")
    done, refused = dispose.execute(project, ledger, p1["plan_id"])
    assert first["package_id"] in {r.package_id for r in refused} and first["package_id"] not in done
    holds.release(ledger, h.hold_id, by="A")
    p2 = dispose.plan(project, ledger, by="C", as_of=NOW)
    assert [e["package_id"] for e in p2["packages"]] == [first["package_id"]]
    dispose.approve(ledger, p2["plan_id"], by="D")
    with monkeypatch.context() as m, pytest.raises(SystemExit):  # a crash right after the delete ...
        m.setattr(dispose, "fault", crash_after("dispose_after_delete"))
        dispose.execute(project, ledger, p2["plan_id"])
    preserved = _reconfigure(tmp_path, backend, {"action": "preserve"})  # ... then zones.yaml says preserve:
    assert dispose.execute(preserved, ledger, p2["plan_id"])[0] == [first["package_id"]]  # what happened is recorded
    with ledger.engine.connect() as c:
        entries = c.execute(sa.text("SELECT plan_id, planned_by, approved_by, state FROM dz_disposals WHERE "
                                    "package_id = :p ORDER BY seq"), {"p": first["package_id"]}).all()
    assert [tuple(e) for e in entries] == [(p1["plan_id"], "A", "B", "withdrawn"),
                                           (p2["plan_id"], "C", "D", "disposed")]
    assert reconcile(ledger) == [] and dispose.verify_register(ledger) == [] and ledger.verify() == []
    premis = Path(project.zone_uri("cold")) / "_disposals" / f"{first['package_id']}.premis.xml"
    assert "person:D" in premis.read_text() and second["package_id"] != first["package_id"]
    with pytest.raises(TerminalError, match=rf"plan {p2['plan_id']} by C, approved by D"):
        verify_and_receipt(project, first["package_id"], None)


def test_a_hold_whose_row_was_deleted_still_holds_and_can_be_released(tmp_path: Path) -> None:
    project = ready(_sqlite(tmp_path), tmp_path)
    ledger = Ledger(project.ledger_url)
    h = holds.add(project, ledger, dataset="lakarintyg", period="2014", reason="JO", by="A")
    with ledger.engine.begin() as c:
        c.execute(sa.text("DELETE FROM dz_holds"))
    assert [x.hold_id for x in holds.active(ledger, "lakarintyg")] == [h.hold_id]
    done = holds.release(ledger, h.hold_id, by="B")
    assert done.released_by == "B" and holds.active(ledger, "lakarintyg") == []
    assert reconcile(ledger) == []


def test_a_person_hold_is_resolved_by_streaming_hot_in_chunks(backend: dict[str, str], tmp_path: Path) -> None:
    """Persons are found chunk by chunk (memory is one chunk, not the population): a tiny chunk finds exactly what
    one chunk does, in hot (the raw key) and in warm (its pseudonyms), on both hot stores."""
    import pyarrow.compute as pc

    from lifecycle.protect import load_keys
    from lifecycle.warm import WarmTable
    from tests.test_cold import hot_table, old_payer

    project = ready(backend, tmp_path)
    ledger = Ledger(project.ledger_url)
    _, person = old_payer(project)
    other = next(r for r in hot_table(project, "individ") if r["individ_id"] != person["individ_id"])
    hs = [holds.add(project, ledger, dataset="utbetalning", person=p["personnummer"], reason="återkrav", by="A")
          for p in (person, other)]
    keys = load_keys(need_seal=False)
    n = len(hot_table(project, "individ"))
    for zone in ("hot", "warm"):
        whole = holds.resolve_people(project, hs, keys, zone=zone, chunk=n + 1)
        bits = holds.resolve_people(project, hs, keys, zone=zone, chunk=7)
        assert {k: sorted(map(str, v.to_pylist())) for k, v in bits.items()} == \
            {k: sorted(map(str, v.to_pylist())) for k, v in whole.items()}
    hot = holds.resolve_people(project, hs, keys, zone="hot", chunk=7)
    assert [v.to_pylist() for v in hot.values()] == [[person["individ_id"]], [other["individ_id"]]] or \
        [v.to_pylist() for v in hot.values()] == [[other["individ_id"]], [person["individ_id"]]]
    warm = holds.resolve_people(project, hs, keys, zone="warm", chunk=7)[hs[0].person]
    pays = WarmTable(project.warm_table_uri("utbetalning")).to_arrow(columns=["individ_id"]).column("individ_id")
    mine = [r for r in hot_table(project, "utbetalning") if r["individ_id"] == person["individ_id"]]
    assert int(pc.sum(pc.is_in(pays, value_set=warm)).as_py() or 0) == len(mine) > 0
    # hot no longer knows the person by that number (a samordningsnummer replaced, say): warm's own record of
    # the person still finds their rows there
    used = {r["personnummer"] for r in hot_table(project, "individ")}
    fresh = next(n for n in TEST_NUMBERS.read_text().split() if len(n) == 12 and n not in used)
    eng = make_engine(project.hot_url)
    with eng.begin() as c:
        c.execute(sa.text("UPDATE individ SET personnummer = :n WHERE individ_id = :i"),
                  {"n": fresh, "i": person["individ_id"]})
    eng.dispose()
    assert holds.resolve_people(project, hs, keys, zone="hot", chunk=7)[hs[0].person].to_pylist() == []
    lost = holds.resolve_people(project, hs, keys, zone="warm", chunk=7)[hs[0].person]
    assert sorted(lost.to_pylist()) == sorted(warm.to_pylist())


def test_with_archivists_declared_only_they_plan_approve_and_see_a_plan_carried_out(tmp_path: Path) -> None:
    backend, _, ledger, plan = _approved(tmp_path)  # planned by A, approved by B, no list declared

    def listed(names: list[str]) -> Project:
        def edit(raw: dict[str, Any]) -> None:
            raw["archivists"] = names

        return load(write_project(tmp_path, hot_url=backend["hot"], ledger_url=backend["ledger"],
                                  datasets=["individ", "utbetalning", "lakarintyg", "arende"], edit=edit), env={})

    strict = listed(["A", "b "])
    with pytest.raises(TerminalError, match=r"'Mallory' is not among the archivists.*to plan.*\(A, b \)"):
        dispose.plan(strict, ledger, by="Mallory", as_of=NOW)
    mine = dispose.plan(strict, ledger, by="a", as_of=NOW)  # names compare as the four-eyes rule does
    with pytest.raises(TerminalError, match=r"'Mallory' is not among the archivists.*to approve"):
        dispose.approve(ledger, mine["plan_id"], by="Mallory", project=strict)
    res = zones("dispose", "approve", mine["plan_id"], "--by", "Mallory", cwd=tmp_path)
    assert res.returncode != 0 and "not among the archivists" in res.stdout + res.stderr
    paths = [Path(p["path"]) for p in package_rows(ledger, "lakarintyg")]
    with pytest.raises(TerminalError, match=r"'B' is not among the archivists.*to approve"):
        dispose.execute(listed(["A"]), ledger, plan["plan_id"])  # approved by B, who is no longer listed
    assert all(p.exists() for p in paths)
    done, _ = dispose.execute(strict, ledger, plan["plan_id"])
    assert done and not any(Path(p["path"]).exists() for p in package_rows(ledger, "lakarintyg")
                            if p["package_id"] in done)
