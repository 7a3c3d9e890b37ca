"""The ledger's tables against its hash-chained log: what ``zones ledger verify`` checks after the chain itself.

The chain proves the event log is intact; the tables next to it (watermarks, holds, packages, the disposal
register) are projections a run reads to decide what to do. Each change to one of them is written in the same
transaction as its event, so every row must agree with the log, and a row edited, deleted or added behind the
tool's back shows up here:

- watermarks: the row names the batch that moved it; that batch's event must carry the same watermark, and no
  later event may have moved it (a watermark set ahead silently skips rows; one deleted re-loads into a full table);
- holds: every ``hold.added`` has its row with the same scope, reason and setter, released exactly when the log
  says ``hold.released`` (a deleted or released-behind-the-back hold would let a delete through);
- packages: every row has its ``archive.verified`` event with the same METS checksum, and is ``disposed`` exactly
  when the log records ``dispose.executed``;
- the disposal register: its own hash chain, and each entry carried out is anchored by its ``dispose.executed``
  event (same package, basis, plan and — for events that record it — the entry's hash, so a register rewritten
  and re-chained end to end is still caught).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from lifecycle.ledger import Ledger, disposals, events, holds, packages, watermarks

__all__ = ["reconcile"]


def _events(ledger: Ledger, kinds: Iterable[str]) -> list[dict[str, Any]]:
    import json

    with ledger.engine.connect() as c:
        rows = c.execute(sa.select(events.c.seq, events.c.dataset, events.c.kind, events.c.batch_id,
                                   events.c.payload).where(events.c.kind.in_(list(kinds))).order_by(events.c.seq))
        return [{**dict(r._mapping), "payload": json.loads(r.payload)} for r in rows]


def _watermarks(ledger: Ledger) -> list[str]:
    problems = []
    moved: dict[str, dict[str, Any]] = {}  # dataset -> the last event that advanced its watermark
    by_batch: dict[str, dict[str, Any]] = {}
    for e in _events(ledger, ["promote.committed", "promote.watermark_reset"]):
        if e["kind"] == "promote.watermark_reset":  # a rebuild starts over: no watermark until it finishes
            moved.pop(e["dataset"], None)
            continue
        if e["batch_id"]:
            by_batch[e["batch_id"]] = e
        if e["payload"].get("advanced") and e["dataset"]:
            moved[e["dataset"]] = e
    with ledger.engine.connect() as c:
        rows = {r.dataset: r for r in c.execute(sa.select(watermarks))}
    for ds, r in rows.items():
        setter = by_batch.get(r.batch_id)
        if setter is None or setter["dataset"] != ds or setter["payload"].get("watermark") != r.watermark:
            problems.append(f"watermark of {ds} is {r.watermark} (batch {r.batch_id}), but the log records no "
                            "committed batch that set it: the row was edited — the next promote would skip or "
                            "repeat rows")
        elif ds in moved and moved[ds]["batch_id"] != r.batch_id:
            problems.append(f"watermark of {ds} names batch {r.batch_id}, but the log's last advance is batch "
                            f"{moved[ds]['batch_id']} ({moved[ds]['payload'].get('watermark')}): the row was edited")
    for ds, e in moved.items():
        if ds not in rows:
            problems.append(f"watermark of {ds} is missing, but the log says batch {e['batch_id']} set it to "
                            f"{e['payload'].get('watermark')}: the next promote would reload the whole table")
    return problems


def _holds(ledger: Ledger) -> list[str]:
    problems = []
    added = {e["payload"]["hold_id"]: e for e in _events(ledger, ["hold.added"])}
    released = {e["payload"]["hold_id"]: e for e in _events(ledger, ["hold.released"])}
    with ledger.engine.connect() as c:
        rows = {r.hold_id: r for r in c.execute(sa.select(holds))}
    for hid, e in added.items():
        r, p = rows.get(hid), e["payload"]
        if r is None:
            problems.append(f"hold {hid} ({e['dataset']}) is in the log but its row was deleted: it still holds "
                            "(every delete consults the log too)")
            continue
        said = (e["dataset"], p.get("period"), p.get("case"), p.get("person"), p.get("reason"), p.get("by"))
        if (r.dataset, r.period, r.case_id, r.person, r.reason, r.set_by) != said:
            problems.append(f"hold {hid}: its row's dataset, scope, reason or setter differ from the log")
        if (r.released_at is not None) != (hid in released):
            problems.append(f"hold {hid}: its row says {'released' if r.released_at else 'active'}, the log says "
                            f"{'released' if hid in released else 'active'}")
        elif hid in released and r.released_by != (by := released[hid]["payload"].get("by")):
            problems.append(f"hold {hid}: released by {r.released_by!r} in its row, {by!r} in the log")
    problems += [f"hold {hid} has a row but no hold.added event: it was inserted behind the log"
                 for hid in rows if hid not in added]
    return problems


def _packages(ledger: Ledger) -> list[str]:
    problems = []
    made = {e["batch_id"]: e for e in _events(ledger, ["archive.verified"])}
    gone = {e["batch_id"]: e for e in _events(ledger, ["dispose.executed"])}
    with ledger.engine.connect() as c:
        rows = {r.package_id: r for r in c.execute(sa.select(packages))}
    for pid, r in rows.items():
        e = made.get(pid)
        if e is None:
            problems.append(f"package {pid} has a row but no archive.verified event")
        elif e["payload"].get("mets_sha256") != r.mets_sha256:
            problems.append(f"package {pid}: METS SHA-256 {r.mets_sha256} in its row, "
                            f"{e['payload'].get('mets_sha256')} in the log")
        if (r.status == "disposed") != (pid in gone):
            problems.append(f"package {pid}: its row says {r.status}, the log "
                            f"{'records its disposal' if pid in gone else 'records no disposal'}")
    problems += [f"package {pid} is in the log but its row was deleted" for pid in made if pid not in rows]
    return problems


def _register(ledger: Ledger) -> list[str]:
    from lifecycle.dispose import verify_register

    problems = verify_register(ledger)
    executed = {(e["batch_id"], e["payload"].get("plan_id")): e for e in _events(ledger, ["dispose.executed"])}
    with ledger.engine.connect() as c:
        rows = {(r.package_id, r.plan_id): r for r in c.execute(sa.select(disposals))}
    for (pid, plan), e in executed.items():
        r, p = rows.get((pid, plan)), e["payload"]
        if r is None:
            problems.append(f"disposal register: the log says {pid} was disposed (plan {plan}, basis "
                            f"{p.get('basis')!r}) but its register entry was deleted")
            continue
        if (r.basis, r.mets_sha256) != (p.get("basis"), p.get("mets_sha256")):
            problems.append(f"disposal register entry {r.seq} ({pid}): basis, plan or METS checksum differ from "
                            "the log's dispose.executed")
        if "register_hash" in p and p["register_hash"] != r.hash:
            problems.append(f"disposal register entry {r.seq} ({pid}) is not the entry the log anchored "
                            "(rewritten and re-chained)")
        if r.state != "disposed":
            problems.append(f"disposal register entry {r.seq} ({pid}) says {r.state}, the log says disposed")
    who = _plan_people(ledger)
    for key, r in rows.items():
        if r.state == "disposed" and key not in executed:
            problems.append(f"disposal register entry {r.seq} ({r.package_id}) says disposed but the log records "
                            "no dispose.executed for it")
        people = who.get(r.plan_id)
        if people and (r.planned_by, r.approved_by) != people:
            problems.append(f"disposal register entry {r.seq} ({r.package_id}): planner/approver {r.planned_by}/"
                            f"{r.approved_by} differ from the log's {people[0]}/{people[1]}")
    return problems


def _plan_people(ledger: Ledger) -> dict[str, tuple[str | None, str | None]]:
    planned = {e["payload"].get("plan_id"): e["payload"].get("by") for e in _events(ledger, ["dispose.planned"])}
    approved = {e["payload"].get("plan_id"): e["payload"].get("by") for e in _events(ledger, ["dispose.approved"])}
    return {pid: (planned.get(pid), approved.get(pid)) for pid in planned}


def reconcile(ledger: Ledger) -> list[str]:
    """Every disagreement between the ledger's tables and its log (empty list = they agree)."""
    return [*_watermarks(ledger), *_holds(ledger), *_packages(ledger), *_register(ledger)]
