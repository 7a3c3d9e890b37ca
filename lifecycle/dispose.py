"""Disposal (gallring) with proof: plan → approve (a second person) → execute → a permanent, chained register.

Preservation is the default; a package is disposable only when its dataset's cold rule is ``dispose`` with a cited
``basis`` and its disposal date has passed. ``plan`` lists such packages with rule, basis, counts, bytes and the
holds they hit; ``approve`` must come from another person than the planner (four eyes); ``execute`` deletes only
approved, unheld packages — re-checking holds at that moment — and first writes the proof: a row in the disposal
register (package id, its METS checksum, basis, planner, approver, time; hash-chained, kept for ever) and a PREMIS
deletion event file that outlives the package. No basis, no approval, a hold, or approver = planner → refused,
nothing deleted. A crash between proof and deletion is finished by the next ``execute``.

A plan is sealed by the hash-chained log: ``dispose.planned`` records the SHA-256 of its package list and who
made it, ``dispose.approved`` the same digest and who approved. ``approve`` and ``execute`` recompute the digest
from the plan table and take planner and approver from the log, so a plan edited after it was made (a package
slipped in, a planner renamed to pass the four-eyes check) is refused with nothing deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from lifecycle import holds as holds_mod
from lifecycle.archive import remove_tree
from lifecycle.cold_status import package_rows, rule_in_force
from lifecycle.fixity import locate
from lifecycle.ledger import GENESIS, Ledger, disposal_plans, disposals, packages, utcnow
from lifecycle.promote import fault
from lifecycle.protect import Keys, load_keys
from zones.config import Project
from zones.errors import TerminalError

log = logging.getLogger("datazones.dispose")


@dataclass(frozen=True)
class Refusal:
    package_id: str
    reason: str


def _holds_hit(project: Project, ledger: Ledger, pkg: dict[str, Any], keys: Keys) -> list[str]:
    """Ids of active holds covering any row of the package (dataset, period, case or person)."""
    hold_list = [h for h in holds_mod.active(ledger, pkg["dataset"])]
    if not hold_list:
        return []
    hit = [h.hold_id for h in hold_list if not (h.period or h.case_id or h.person)
           or (h.period == pkg["period"] and not (h.case_id or h.person))]
    rest = [h for h in hold_list if h.hold_id not in hit and (h.case_id or h.person)
            and (not h.period or h.period == pkg["period"])]
    if rest:
        ds = project.dataset(pkg["dataset"])
        cols = [c for c in (ds.case_key, ds.person_key) if c]
        csv = locate(Path(pkg["path"]))[0] / "representations" / "rep1" / "data" / f"{pkg['dataset']}.csv"
        opts = pacsv.ConvertOptions(include_columns=[*cols, ds.business_date],
                                    column_types=dict.fromkeys([*cols, ds.business_date], pa.string()))
        rows = pacsv.read_csv(csv, convert_options=opts)
        rows = rows.set_column(rows.schema.get_field_index(ds.business_date), ds.business_date,
                               pc.cast(pc.utf8_slice_codeunits(rows.column(ds.business_date), 0, 10), pa.date32()))
        people = holds_mod.resolve_people(project, rest, keys, zone="hot")
        people = {k: pc.cast(v, pa.string()) for k, v in people.items()}
        for h in rest:
            if pc.any(holds_mod.held_mask(project, pkg["dataset"], rows, [h], person_keys=people)).as_py():
                hit.append(h.hold_id)
    return hit


def plan(project: Project, ledger: Ledger, *, by: str, as_of: datetime | None = None,
         keys: Keys | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    as_of = as_of or now
    if as_of > now + timedelta(minutes=5):  # what is due is decided by today's date, never a future one
        raise TerminalError(f"a disposal plan cannot look ahead: as-of {as_of.isoformat()} is after now "
                            f"({now.isoformat(timespec='seconds')}); plan what is due today")
    check_archivist(project, by, "plan")
    keys = keys or load_keys(need_seal=False)
    entries, kept = [], []
    for p in package_rows(ledger):
        if p["status"] != "verified":
            continue
        due, basis, why = rule_in_force(project, p)
        if why is not None:
            if p["cold_action"] == "dispose" and (due is None or due <= as_of.date()):  # the archivist sees why
                kept.append({"package_id": p["package_id"], "reason": why})
            continue
        if due is None or basis is None or due > as_of.date():
            continue
        entry = {"package_id": p["package_id"], "dataset": p["dataset"], "period": p["period"],
                 "rows": p["rows"], "bytes": p["bytes"], "basis": basis, "dispose_after": due.isoformat(),
                 "mets_sha256": p["mets_sha256"], "holds": _holds_hit(project, ledger, p, keys)}
        if p["basis"] != basis:
            entry["archived_under"] = p["basis"]
        entries.append(entry)
    plan_id = "D-" + secrets.token_hex(4)
    text = json.dumps(entries)
    with ledger.engine.begin() as c:
        c.execute(disposal_plans.insert().values(plan_id=plan_id, as_of=as_of, planned_by=by, planned_at=utcnow(),
                                                 status="planned", packages=text))
        ledger.append("dispose.planned", conn=c, plan_id=plan_id, by=by, packages=[e["package_id"] for e in entries],
                      sha256=_digest(text))
    return {"plan_id": plan_id, "planned_by": by, "as_of": as_of.isoformat(), "packages": entries,
            "preserved_now": kept}


def _digest(packages_json: str) -> str:
    return hashlib.sha256(packages_json.encode()).hexdigest()


def _plan(ledger: Ledger, plan_id: str) -> dict[str, Any]:
    """The plan as its table holds it, checked against the log (module docstring): planner and approver are the
    log's; a package list whose digest is not the one recorded raises."""
    with ledger.engine.connect() as c:
        r = c.execute(sa.select(disposal_plans).where(disposal_plans.c.plan_id == plan_id)).first()
    if r is None:
        raise TerminalError(f"no disposal plan {plan_id!r}; `zones dispose plan` makes one")
    d = dict(r._mapping)
    said = {kind: e["payload"] for kind in ("dispose.planned", "dispose.approved") for e in ledger.events(kind=kind)
            if e["payload"].get("plan_id") == plan_id}
    planned, approved = said.get("dispose.planned"), said.get("dispose.approved")
    closed = next((e for e in ledger.events(kind="dispose.closed") if e["payload"].get("plan_id") == plan_id), None)
    digest = _digest(d["packages"])
    for kind, event in (("made", planned), ("approved", approved)):
        if event is None:
            continue
        if "sha256" not in event:  # recorded before plans were sealed (0.1.0 development ledgers)
            log.warning("disposal plan %s was %s before plans were sealed: its package list is not checked",
                        plan_id, kind)
            continue
        if event.get("sha256") != digest:
            raise TerminalError(f"disposal plan {plan_id} is not the plan that was {kind}: the ledger recorded its "
                                f"package list as SHA-256 {event.get('sha256')}, the plan table now holds {digest}. "
                                "Nothing was disposed; make a new plan (`zones dispose plan`) and have it approved")
    if planned is None:
        raise TerminalError(f"disposal plan {plan_id} has no dispose.planned record in the ledger; make a new plan")
    d["planned_by"] = planned["by"]
    if approved is not None:
        d["approved_by"] = approved["by"]
    elif d["status"] != "planned":
        raise TerminalError(f"disposal plan {plan_id} says {d['status']} but the ledger records no approval; make a "
                            "new plan and have it approved")
    if closed is not None:  # the log, not the table, says a plan was carried out: it is never run again
        d["status"], d["closed_at"] = "executed", closed["at"]
    d["packages"] = json.loads(d["packages"])
    d["sha256"] = digest
    return d


def check_archivist(project: Project | None, by: str, role: str) -> None:
    """With ``archivists`` declared in zones.yaml, only those may plan and approve disposal."""
    allowed = project.config.archivists if project is not None else []
    if allowed and by.strip().casefold() not in {a.strip().casefold() for a in allowed}:
        raise TerminalError(f"{by!r} is not among the archivists zones.yaml allows to {role} disposal "
                            f"({', '.join(allowed)}): fix --by, or add the person to `archivists` in "
                            f"{project.file if project is not None else 'zones.yaml'}")


def approve(ledger: Ledger, plan_id: str, *, by: str, project: Project | None = None) -> dict[str, Any]:
    check_archivist(project, by, "approve")
    p = _plan(ledger, plan_id)
    if p["status"] != "planned":
        raise TerminalError(f"plan {plan_id} is {p['status']}, not awaiting approval")
    if by.strip().casefold() == p["planned_by"].strip().casefold():
        raise TerminalError(f"plan {plan_id} was made by {p['planned_by']}: approval must come from a different "
                            "person (four-eyes rule for disposal)")
    with ledger.engine.begin() as c:
        c.execute(disposal_plans.update().where(disposal_plans.c.plan_id == plan_id).values(
            approved_by=by, approved_at=utcnow(), status="approved"))
        ledger.append("dispose.approved", conn=c, plan_id=plan_id, by=by, sha256=p["sha256"])
    return _plan(ledger, plan_id)


def _register(c: sa.Connection, entry: dict[str, Any], p: dict[str, Any], at: str) -> None:
    """Write the register entry (state ``executing``), chained to the one before."""
    head = c.execute(sa.select(disposals.c.seq, disposals.c.hash).order_by(disposals.c.seq.desc()).limit(1)
                     ).first()
    seq, prev = (int(head.seq) + 1, head.hash) if head else (1, GENESIS)
    body = {"seq": seq, "package_id": entry["package_id"], "dataset": entry["dataset"], "period": entry["period"],
            "mets_sha256": entry["mets_sha256"], "rows": entry["rows"], "basis": entry["basis"],
            "plan_id": p["plan_id"], "planned_by": p["planned_by"], "approved_by": p["approved_by"],
            "executed_at": at}
    h = hashlib.sha256((prev + json.dumps(body, sort_keys=True)).encode()).hexdigest()
    c.execute(disposals.insert().values(**body, state="executing", prev_hash=prev, hash=h))


def verify_register(ledger: Ledger) -> list[str]:
    problems, prev = [], GENESIS
    with ledger.engine.connect() as c:
        for r in c.execute(sa.select(disposals).order_by(disposals.c.seq)):
            body = {k: getattr(r, k) for k in ("seq", "package_id", "dataset", "period", "mets_sha256", "rows",
                                               "basis", "plan_id", "planned_by", "approved_by", "executed_at")}
            if r.prev_hash != prev or hashlib.sha256((prev + json.dumps(body, sort_keys=True)).encode()
                                                     ).hexdigest() != r.hash:
                problems.append(f"disposal register row {r.seq} ({r.package_id}) does not match its chain")
            prev = r.hash
    return problems


def _premis_deletion(project: Project, entry: dict[str, Any], p: dict[str, Any], at: str) -> Path:
    """The PREMIS deletion event that outlives the package: linked to the package and to the people and
    software that planned, approved and carried it out."""
    from lifecycle.fixity import datazones_version, el, premis_event, to_xml

    folder = Path(project.zone_uri("cold")) / "_disposals"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{entry['package_id']}.premis.xml"
    software = f"software:datazones-{datazones_version()}"
    agents = [(f"person:{p['planned_by']}", "planner", p["planned_by"], "person"),
              (f"person:{p['approved_by']}", "authorizer", p["approved_by"], "person"),
              (software, "executing program", "datazones", "software")]
    root = el(None, "premis:premis", {"version": "3.0"})
    obj = el(root, "premis:object", {"xsi:type": "premis:intellectualEntity"})
    ident = el(obj, "premis:objectIdentifier")
    el(ident, "premis:objectIdentifierType", text="local")
    el(ident, "premis:objectIdentifierValue", text=entry["package_id"])
    premis_event(root, key=f"{entry['package_id']}:deletion", event_type="deletion", when=at,
                 detail=f"Gallring of {entry['package_id']} (METS sha256 {entry['mets_sha256']}, {entry['rows']} rows) "
                        f"under {entry['basis']}; plan {p['plan_id']} by {p['planned_by']}, approved by "
                        f"{p['approved_by']}", outcome="success", agents=[(a[0], a[1]) for a in agents],
                 objects=[entry["package_id"]], notes=[f"basis: {entry['basis']}"])
    for aid, _role, name, kind in agents:
        ag = el(root, "premis:agent")
        i = el(ag, "premis:agentIdentifier")
        el(i, "premis:agentIdentifierType", text="local")
        el(i, "premis:agentIdentifierValue", text=aid)
        el(ag, "premis:agentName", text=name)
        el(ag, "premis:agentType", text=kind)
    out.write_bytes(to_xml(root))
    return out


def _finish(project: Project, ledger: Ledger, entry: dict[str, Any], p: dict[str, Any], mine: Any) -> None:
    """The package is gone: write the PREMIS deletion event, then the outcome in the register and the log."""
    with ledger.engine.connect() as c:
        reg = c.execute(sa.select(disposals.c.seq, disposals.c.hash, disposals.c.executed_at).where(mine)).one()
    _premis_deletion(project, entry, p, reg.executed_at)  # outcome success: written once the package is gone
    with ledger.engine.begin() as c:
        c.execute(disposals.update().where(mine).values(state="disposed"))
        c.execute(packages.update().where(packages.c.package_id == entry["package_id"]).values(status="disposed"))
        ledger.append("dispose.executed", dataset=entry["dataset"], batch_id=entry["package_id"], conn=c,
                      plan_id=p["plan_id"], basis=entry["basis"], mets_sha256=entry["mets_sha256"],
                      register_seq=int(reg.seq), register_hash=reg.hash)  # anchors the register's entry


def _withdraw(ledger: Ledger, package_id: str) -> None:
    """A package refused at execution whose disposal had begun (a crash after its register entry): the register
    says it was not carried out. (The state is outside the entry's hash: the chain stays intact.)"""
    with ledger.engine.begin() as c:
        c.execute(disposals.update().where(disposals.c.package_id == package_id,
                                           disposals.c.state == "executing").values(state="withdrawn"))


def execute(project: Project, ledger: Ledger, plan_id: str, *, keys: Keys | None = None
            ) -> tuple[list[str], list[Refusal]]:
    """Dispose of the plan's packages; returns (disposed ids, refusals). Nothing unapproved or held is touched."""
    p = _plan(ledger, plan_id)
    if p["status"] == "executed":
        raise TerminalError(f"plan {plan_id} was carried out at {p.get('closed_at') or p.get('executed_at')}: a "
                            "plan runs once. A package it did not dispose (held, not due then) needs a new plan "
                            "and a new approval (`zones dispose plan`)")
    if p["status"] != "approved":
        raise TerminalError(f"plan {plan_id} is {p['status']}: it must be approved by a second person first "
                            f"(`zones dispose approve {plan_id} --by WHO`)")
    if p["approved_by"].strip().casefold() == p["planned_by"].strip().casefold():
        raise TerminalError(f"plan {plan_id} was made and approved by {p['planned_by']}: disposal needs two "
                            "people (four-eyes rule); make a new plan")
    check_archivist(project, p["planned_by"], "plan")  # the list in force now, as for the rule in force
    check_archivist(project, p["approved_by"], "approve")
    keys = keys or load_keys(need_seal=False)
    done, refused = [], []
    current = {r["package_id"]: r for r in package_rows(ledger)}
    for entry in p["packages"]:
        pkg = current.get(entry["package_id"])
        if pkg is None or pkg["status"] == "disposed":
            continue
        mine = (disposals.c.package_id == entry["package_id"]) & (disposals.c.plan_id == plan_id)
        with ledger.engine.connect() as c:
            state = c.execute(sa.select(disposals.c.state).where(mine)).scalar()
        if state == "executing" and not Path(pkg["path"]).exists():  # a crash after the delete: record its outcome
            _finish(project, ledger, entry, p, mine)
            done.append(entry["package_id"])
            continue
        if not entry.get("basis"):
            refused.append(Refusal(entry["package_id"], "no basis cited: preservation is the default"))
            continue
        due, basis, why = rule_in_force(project, pkg)  # zones.yaml may have changed since the plan was approved
        if why is not None or basis != entry["basis"]:
            refused.append(Refusal(entry["package_id"], why or f"the basis in force is now {basis!r}, the plan was "
                                   f"approved under {entry['basis']!r}: make a new plan and have it approved"))
            _withdraw(ledger, entry["package_id"])
            continue
        if due is None or due > datetime.now(UTC).date():  # the plan's as-of is not the law's: today's date is
            refused.append(Refusal(entry["package_id"], f"not due: its disposal date is {due}"))
            _withdraw(ledger, entry["package_id"])
            continue
        hit = _holds_hit(project, ledger, pkg, keys)
        if hit:
            refused.append(Refusal(entry["package_id"], f"held by {', '.join(hit)}"))
            _withdraw(ledger, entry["package_id"])
            continue
        at = utcnow().isoformat(timespec="seconds")
        with ledger.engine.begin() as c:
            if state is None:
                _register(c, entry, p, at)  # the intent, state "executing": the outcome follows the deletion
            else:
                c.execute(disposals.update().where(mine).values(state="executing"))
        fault("dispose_after_proof")
        remove_tree(Path(pkg["path"]))
        fault("dispose_after_delete")
        _finish(project, ledger, entry, p, mine)
        done.append(entry["package_id"])
    with ledger.engine.begin() as c:
        c.execute(disposal_plans.update().where(disposal_plans.c.plan_id == plan_id).values(
            executed_at=utcnow(), status="executed"))
        ledger.append("dispose.closed", conn=c, plan_id=plan_id, disposed=done,
                      refused=[{"package_id": r.package_id, "reason": r.reason} for r in refused])
    return done, refused


