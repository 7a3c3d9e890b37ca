"""The demo's operational-system behaviour: `churn` advances cases, adds decisions and payments, corrects rows."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from lifecycle.demo import (
    _EFTERNAMN,
    _KOMMUNER,
    COLUMNS,
    TABLES,
    _add_case,
    _add_months,
    _agi_row,
    _birth,
    _Builder,
    _db,
    _decide,
    _dialect,
    _insert,
    _last_declared_period,
    _new_person,
    _pay,
    _Person,
    _plan_case,
    _Row,
    _update,
    _utc,
    _years_after,
    personnummer_pool,
)
from lifecycle.demo_facts import _to_date, _to_ts


def churn(engine: sa.Engine, *, as_of: datetime, seed: int, fraction: float = 0.02) -> dict[str, int]:
    """One run of the operational system at ``as_of``; returns the rows inserted or updated per table.

    About ``fraction`` of the people move or change name and a few are new; ``fraction / 2`` of the case count
    arrives as new cases (MOTTAGET, with certificates for sickness); at least as many open cases (half of them if
    more) move one step: MOTTAGET→UTREDS→BESLUTAT (a decision and its payment plan)→AVSLUTAT once nothing is left
    to pay. Payments due by today are paid; a few old payments get an amount correction (netto recomputed) and a
    few AGI rows one; employers file the AGI periods that fell due. Every changed row gets ``andrad`` within 5
    minutes before ``as_of`` and after every earlier ``andrad``; new ids continue from the current maximum.
    ValueError if ``as_of`` is not after the newest ``andrad`` (the operational clock only moves forward).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    dialect, as_of = _dialect(engine), _utc(as_of)
    with engine.begin() as conn:
        def q(sql: str, **params: Any) -> list[Any]:
            return list(conn.execute(sa.text(sql), {k: _db(dialect, v) for k, v in params.items()}).all())

        stats = {t: q(f"SELECT COUNT(*), COALESCE(MAX({COLUMNS[t][0]}), 0), MAX(andrad) FROM {t}")[0] for t in TABLES}
        newest = max((_to_ts(s[2]) for s in stats.values() if s[2] is not None), default=None)
        if newest is not None and as_of - newest < timedelta(microseconds=10):
            raise ValueError(f"as_of {as_of.isoformat()} is not after the newest andrad {newest.isoformat()}: "
                             "churn with a later as_of (the operational clock only moves forward)")
        b = _Builder(random.Random(f"{seed}:{as_of.isoformat()}"), as_of, as_of.date())
        b.window = min(timedelta(minutes=5), (as_of - newest) / 2) if newest else timedelta(minutes=5)
        b.today = (as_of - b.window).date()  # every new business date is on or before the date of every stamp
        updates = _churn_changes(b, q, {t: (int(s[0]), int(s[1])) for t, s in stats.items()}, fraction,
                                 _last_declared_period(newest.date()) if newest else None)
        rows = b.tuples({t: int(s[1]) + 1 for t, s in stats.items()})
        for t in TABLES:
            _insert(conn, dialect, t, rows[t])
            for batch in updates[t]:
                _update(conn, dialect, t, batch)
    return {t: len(rows[t]) + sum(map(len, updates[t])) for t in TABLES}


def _churn_changes(b: _Builder, q: Any, stats: dict[str, tuple[int, int]], fraction: float,
                   filed: date | None) -> dict[str, list[list[dict[str, Any]]]]:
    """Add new rows to ``b``; return the updates (batches of same-shaped rows) per table. Each row changes at
    most once. ``filed``: the newest AGI period due at the previous run (people declared for it still work)."""
    rng, today, last = b.rng, b.today, _last_declared_period(b.today)
    upd: dict[str, list[list[dict[str, Any]]]] = {t: [] for t in TABLES}

    def k(table: str, div: int) -> int:
        return max(1, round(stats[table][0] * fraction / div))

    def sample(table: str, count: int, sql: str) -> list[Any]:  # rows of `sql` for random existing ids
        ids = rng.sample(range(1, stats[table][1] + 1), min(stats[table][1], 5 * count))
        found = {r[0]: r for r in q(sql.replace(":ids", ",".join(map(str, ids)) or "NULL"))}
        return [found[i] for i in ids if i in found][:count]

    latest = {r[0]: r for r in q(  # the newest AGI row of each person
        "SELECT a.betalningsmottagare, a.period, a.ag_id, a.spec_nr, a.kontant_011, a.skatt_001, a.formaner_012 "
        "FROM agi_iu a JOIN (SELECT betalningsmottagare m, MAX(period) p FROM agi_iu GROUP BY betalningsmottagare) "
        "x ON a.betalningsmottagare = x.m AND a.period = x.p ORDER BY a.agi_id")}
    kontos = dict(q("SELECT individ_id, MIN(konto) FROM utbetalning GROUP BY individ_id"))
    people = {r[0]: r for r in q("SELECT individ_id, personnummer, fornamn, efternamn, kommunkod FROM individ "
                                 "ORDER BY individ_id")}

    def person(iid: int) -> _Person:
        _, pnr, fornamn, efternamn, _ = people[iid]
        p = _Person(iid, pnr, fornamn or "", efternamn or "", rng.randint(250, 600) * 1000, rng.randint(29, 34) / 100,
                    kontos.get(iid) or f"5001 {rng.randrange(10 ** 6, 10 ** 7)}")
        if (agi := latest.get(pnr)) and agi[4]:
            p.employed, p.income, p.tax = bool(filed and agi[1] == f"{filed:%Y%m}"), agi[4] * 12, agi[5] / agi[4]
        return p

    # people: some move or change name, a few are new
    changes = []
    for iid, _, _, efternamn, kommun in rng.sample(list(people.values()), min(len(people), k("individ", 2))):
        if rng.random() < 0.7:
            kommun = rng.choice([c for c in _KOMMUNER if c != kommun])
        else:
            efternamn = rng.choice([e for e in _EFTERNAMN if e != efternamn])
        changes.append({"individ_id": iid, "kommunkod": kommun, "efternamn": efternamn, "andrad": b.stamp(today)})
    upd["individ"].append(changes)
    used = {r[1] for r in people.values()}
    free = [x for x in personnummer_pool() if x not in used and int(x[:4]) <= today.year - 18]
    for i, pnr in enumerate(rng.sample(free, min(len(free), k("individ", 4)))):
        _new_person(b, stats["individ"][1] + 1 + i, pnr, today)

    # new applications arrive today
    adults = [iid for iid, r in people.items() if _birth(r[1]) <= _years_after(today, -18)]
    for _ in range(k("arende", 2) if adults else 0):
        p, forman = person(rng.choice(adults)), rng.choices(("SJP", "FP", "TFP", "AKS", "BOB"), (20, 30, 25, 10, 15))[0]
        plan = _plan_case(rng, forman, today)
        shift = timedelta(0) if forman == "BOB" else today - plan["inkommit"]
        plan.update(pf=plan["pf"] + shift, pt=plan["pt"] + shift, inkommit=today,
                    certs=[(u + shift, a + shift, z + shift) for u, a, z in plan["certs"]])
        _add_case(b, p, forman, plan)

    # open cases move one step
    open_cases = q("SELECT arende_id, individ_id, forman, period_from, period_tom, status FROM arende "
                   "WHERE status <> 'AVSLUTAT' AND period_from IS NOT NULL AND period_tom IS NOT NULL "
                   "ORDER BY arende_id")
    pending = {r[0] for r in q("SELECT DISTINCT b.arende_id FROM utbetalning u JOIN beslut b ON b.beslut_id = "
                               "u.beslut_id WHERE u.status = 'PLANERAD' AND u.utbetald > :today", today=today)}
    grades = dict(q("SELECT l.arende_id, MAX(l.sjukskrivningsgrad) FROM lakarintyg l JOIN arende a "
                    "ON a.arende_id = l.arende_id WHERE a.status = 'UTREDS' GROUP BY l.arende_id"))
    changes = []
    moving = min(len(open_cases), max(k("arende", 2), len(open_cases) // 2))
    for aid, iid, forman, pf, pt, status in sorted(rng.sample(open_cases, moving)):
        if status == "UTREDS":
            p, plan = person(iid), {"pf": _to_date(pf), "pt": _to_date(pt), "grade": grades.get(aid) or 100}
            dec, _, payments = _decide(b, p, _Row((), {}, aid), forman, plan, today)
            for pay in payments:
                _pay(b, p, dec, pay, 0.0 if forman == "BOB" else p.tax, "PLANERAD", today)
        if status in ("MOTTAGET", "UTREDS") or aid not in pending:
            changes.append({"arende_id": aid, "status": {"MOTTAGET": "UTREDS", "UTREDS": "BESLUTAT"}.get(
                status, "AVSLUTAT"), "avslutat": today if status == "BESLUTAT" else None, "andrad": b.stamp(today)})
    upd["arende"].append(changes)

    # payments due by today are paid; a few old ones get an amount correction
    due = q("SELECT utbetalning_id FROM utbetalning WHERE status = 'PLANERAD' AND utbetald <= :today "
            "ORDER BY utbetalning_id", today=today)
    upd["utbetalning"].append([{"utbetalning_id": r[0], "status": "UTBETALD", "andrad": b.stamp(today)} for r in due])
    changes = []
    for uid, brutto, skatt, forman in sample("utbetalning", k("utbetalning", 10), (
            "SELECT u.utbetalning_id, u.brutto_sek, u.skatt_sek, a.forman FROM utbetalning u JOIN beslut b "
            "ON b.beslut_id = u.beslut_id JOIN arende a ON a.arende_id = b.arende_id "
            "WHERE u.status = 'UTBETALD' AND u.brutto_sek > 0 AND u.utbetalning_id IN (:ids)")):
        if forman == "BOB":  # bostadsbidrag: whole hundreds, tax free
            new, tax = max(100, brutto + rng.choice((-200, -100, 100, 200))), 0
        else:
            new = max(1, round(brutto * rng.uniform(0.95, 1.05)))
            new = new + 1 if new == brutto else new
            tax = round(new * (skatt or 0) / brutto)
        changes.append({"utbetalning_id": uid, "brutto_sek": new, "skatt_sek": tax, "netto_sek": new - tax,
                        "andrad": b.stamp(today)})
    upd["utbetalning"].append(changes)

    # employers file the periods that fell due since the previous run; a few declarations are corrected
    months = [] if filed is None else [_add_months(filed, i) for i in range(1, 60) if _add_months(filed, i) <= last]
    leave: dict[str, list[tuple[str, date, date]]] = {}
    for pnr, forman, a, z in q("SELECT i.personnummer, a.forman, a.period_from, a.period_tom FROM arende a JOIN "
                               "individ i ON i.individ_id = a.individ_id WHERE a.forman IN ('FP', 'TFP') "
                               "AND a.period_tom >= :since", since=months[0] if months else today):
        leave.setdefault(pnr, []).append((forman, _to_date(a), _to_date(z)))
    for pnr, period, ag_id, spec, kontant, skatt, formaner in latest.values():
        if months and kontant and period == f"{_add_months(months[0], -1):%Y%m}":  # still employed
            p = _Person(0, pnr, "", "", int(kontant * 12 * 1.03 ** (b.as_of.year - months[0].year)), skatt / kontant,
                        "", leave=leave.get(pnr, []))
            for m in months:
                _agi_row(b, p, ag_id, spec, formaner, m, today)
    changes = []
    for agi_id, kontant, skatt in sample("agi_iu", k("agi_iu", 20), "SELECT agi_id, kontant_011, skatt_001 FROM "
                                         "agi_iu WHERE kontant_011 > 0 AND agi_id IN (:ids)"):
        new = round(kontant * rng.uniform(0.9, 1.1)) + 1
        changes.append({"agi_id": agi_id, "kontant_011": new, "skatt_001": round(new * (skatt or 0) / kontant),
                        "andrad": b.stamp(today)})
    upd["agi_iu"].append(changes)
    return upd
