"""The demo hot store: create its schema, seed coherent synthetic data, churn it like the operational system.

People use only Skatteverket's test personnummer (domain.md): dates 1976-01-01..2013-12-31 with birth numbers 238
and 239 plus the Luhn digit, minus ``EXCLUDED_DATES`` (dates where one of the two is not on the published list).
Cases, decisions, payments, certificates and employer declarations follow the benefit rules in domain.md; a
decision creates its whole payment plan (PLANERAD) and payments turn UTBETALD on their day. Deterministic given
``seed`` and ``as_of``; timestamps are UTC and never after ``as_of``.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from zones.errors import TerminalError
from zones.personnummer import is_valid, luhn_check_digit

__all__ = ["COLUMNS", "EXCLUDED_DATES", "SQL_DIR", "TABLES", "churn", "create_schema", "personnummer_pool", "seed"]

_CHECKOUT_SQL = Path(__file__).resolve().parent.parent / "sql"
# a checkout's sql/, else the copy an installed wheel carries (pyproject.toml: force-include)
SQL_DIR = _CHECKOUT_SQL if _CHECKOUT_SQL.is_dir() else Path(__file__).resolve().parent / "_sql"
COLUMNS: dict[str, tuple[str, ...]] = {t: tuple(cols.split()) for t, cols in {
    "individ": "individ_id personnummer id_typ fornamn efternamn fodelsear kon kommunkod skyddad_identitet andrad",
    "arende": "arende_id individ_id forman inkommit period_from period_tom kanal status avslutat andrad",
    "beslut": "beslut_id arende_id beslutsdatum utfall omfattning sgi_sek dagbelopp_sek antal_dagar automatiserat "
              "motivering andrad",
    "utbetalning": "utbetalning_id beslut_id individ_id utbetald avser_from avser_tom brutto_sek skatt_sek netto_sek "
                   "konto status andrad",
    "lakarintyg": "intyg_id arende_id utfardat diagnoskod sjukskrivningsgrad giltig_from giltig_tom "
                  "funktionsnedsattning andrad",
    "agi_iu": "agi_id ag_id period betalningsmottagare spec_nr kontant_011 skatt_001 formaner_012 franvaro_datum "
              "franvaro_typ andrad"}.items()}
TABLES = tuple(COLUMNS)
_SQLITE_TEXT = set("inkommit period_from period_tom avslutat beslutsdatum utbetald avser_from avser_tom utfardat "
                   "giltig_from giltig_tom franvaro_datum skyddad_identitet automatiserat andrad".split())

# Birth dates where 238 or 239 (or both) is missing from skatteverket-testpersonnummer.txt (25 numbers, 21 dates).
EXCLUDED_DATES = frozenset(date.fromisoformat(d) for d in (
    "1976-01-01 1980-01-01 1989-12-20 1990-01-01 1990-01-02 1990-01-04 1990-01-05 1990-01-06 1990-01-08 "
    "1990-01-09 1990-01-13 2000-12-18 2001-03-03 2001-11-04 2002-10-16 2002-12-27 2005-05-09 2007-09-11 "
    "2007-12-28 2010-12-11 2011-12-30").split())

from lifecycle.demo_facts import (  # noqa: E402
    _AUTO,
    _AVSLAG,
    _CLEARING,
    _DAY,
    _DECIDE_DAYS,
    _DIAGNOSER,
    _EFTERNAMN,
    _FEMALE,
    _FORMAN_TEXT,
    _KOMMUN_WEIGHTS,
    _KOMMUNER,
    _MALE,
    _MOTIVERING,
    _NAMED,
    _OMFATTNING,
    _add_months,
    _between,
    _days,
    _last_declared_period,
    _month_end,
    _utc,
    _weekdays,
    _years_after,
)

_PBB10 = 588_000  # 10 prisbasbelopp 2025 = the SGI ceiling; scaled back 2.5 % a year


@functools.cache
def personnummer_pool() -> tuple[str, ...]:
    """Every number the generator may use, by date then birth number (27,718 numbers)."""
    days = ((date(1976, 1, 1) + i * _DAY) for i in range((date(2013, 12, 31) - date(1976, 1, 1)).days + 1))
    return tuple(f"{d:%Y%m%d}{nnn}{luhn_check_digit(f'{d:%y%m%d}{nnn}')}"
                 for d in days if d not in EXCLUDED_DATES for nnn in ("238", "239"))


# ---------------------------------------------------------------------------------------------------- helpers
def _dialect(engine: sa.Engine) -> str:
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise TerminalError(f"the demo hot store supports sqlite and postgresql, not {engine.dialect.name!r}: "
                            "point the engine at one of them")
    return engine.dialect.name


def _db(dialect: str, v: Any) -> Any:
    """A value as the dialect stores it (SQLite: ISO text dates, UTC text with 6 fraction digits, 0/1)."""
    if dialect == "postgresql" or v is None:
        return v
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return v.isoformat() if isinstance(v, date) else int(v) if isinstance(v, bool) else v


def _insert(conn: sa.Connection, dialect: str, table: str, rows: list[tuple[Any, ...]]) -> None:
    cols = COLUMNS[table]
    if rows and dialect == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
    elif rows:
        text = [i for i, c in enumerate(cols) if c in _SQLITE_TEXT]
        stmt = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        for start in range(0, len(rows), 5000):
            chunk = [list(r) for r in rows[start:start + 5000]]
            for r in chunk:
                for i in text:
                    r[i] = _db(dialect, r[i])
            conn.exec_driver_sql(stmt, [tuple(r) for r in chunk])


def _update(conn: sa.Connection, dialect: str, table: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        pk = COLUMNS[table][0]
        sets = ", ".join(f"{c} = :{c}" for c in rows[0] if c != pk)
        conn.execute(sa.text(f"UPDATE {table} SET {sets} WHERE {pk} = :{pk}"),
                     [{k: _db(dialect, v) for k, v in r.items()} for r in rows])


def create_schema(engine: sa.Engine) -> None:
    """Create the six demo tables and their indexes from ``sql/hot_<dialect>.sql``; safe to run again."""
    text = (SQL_DIR / f"hot_{_dialect(engine)}.sql").read_text(encoding="utf-8")
    body = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    with engine.begin() as conn:
        for stmt in filter(None, (s.strip() for s in body.split(";"))):
            conn.exec_driver_sql(stmt)


# ---------------------------------------------------------------------------------------------------- builder
@dataclass(eq=False)
class _Row:
    key: tuple[Any, ...]
    values: dict[str, Any]
    id: int = 0


@dataclass
class _Person:
    id: int
    pnr: str
    fornamn: str
    efternamn: str
    income: int  # yearly, in as_of's year
    tax: float
    konto: str
    employed: bool = False
    emp_start: date = date.min
    emp_end: date | None = None
    leave: list[tuple[str, date, date]] = field(default_factory=list)  # FP/TFP periods, for AGI absence

    @property
    def birth(self) -> date:
        return _birth(self.pnr)


def _birth(pnr: str) -> date:
    try:
        return date(int(pnr[:4]), int(pnr[4:6]), int(pnr[6:8]) % 60)
    except ValueError:  # a deliberately bad row (quality-gate tests): any adult date will do
        return date(1980, 1, 1)


class _Builder:
    """Collects new rows; ids are assigned in business-date order when the rows are written."""

    def __init__(self, rng: random.Random, as_of: datetime, today: date) -> None:
        self.rng, self.as_of, self.today = rng, as_of, today
        self.rows: dict[str, list[_Row]] = {t: [] for t in TABLES}
        self.window: timedelta | None = None  # churn: every change is stamped within `window` before as_of

    def add(self, table: str, key: Any, values: dict[str, Any]) -> _Row:
        row = _Row((key, sum(map(len, self.rows.values()))), values)
        self.rows[table].append(row)
        return row

    def stamp(self, d: date) -> datetime:
        """A modification time on business day ``d`` (office hours, UTC), never after ``as_of``."""
        if self.window is not None:
            return self.as_of - self.window * self.rng.random()
        ts = datetime.combine(d, time(6), UTC) + timedelta(seconds=self.rng.random() * 13 * 3600)
        if ts > self.as_of:
            start = datetime.combine(d, time(0), UTC)
            ts = start + (self.as_of - start) * self.rng.random()
        return ts

    def tuples(self, first_ids: dict[str, int]) -> dict[str, list[tuple[Any, ...]]]:
        for table, rows in self.rows.items():
            rows.sort(key=lambda r: r.key)
            for i, row in enumerate(rows, first_ids.get(table, 1)):
                row.id = i
        out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        for table, rows in self.rows.items():
            cols = COLUMNS[table]
            refs = [i for i, c in enumerate(cols) if i and c in ("arende_id", "beslut_id")]  # values are _Rows
            for r in rows:
                values = [r.id, *map(r.values.__getitem__, cols[1:])]
                for i in refs:
                    values[i] = values[i].id
                out[table].append(tuple(values))
        return out


def _new_person(b: _Builder, pid: int, pnr: str, changed: date) -> _Person:
    rng, woman = b.rng, int(pnr[10]) % 2 == 0
    clearing, digits = rng.choice(_CLEARING)
    account = str(rng.randrange(10 ** (digits - 1), 10 ** digits))
    while digits == 10 and any(is_valid(c + account) for c in ("18", "19", "20")):  # never pnr-shaped
        account = str(rng.randrange(10 ** (digits - 1), 10 ** digits))
    p = _Person(pid, pnr, rng.choice(_FEMALE if woman else _MALE), rng.choice(_EFTERNAMN),
                int(rng.lognormvariate(math.log(400_000), 0.3)) // 100 * 100, rng.randint(29, 34) / 100,
                f"{clearing} {account}")
    b.add("individ", pid, {
        "personnummer": pnr, "id_typ": "PNR", "fornamn": p.fornamn, "efternamn": p.efternamn,
        "fodelsear": p.birth.year, "kon": "K" if woman else "M", "skyddad_identitet": rng.random() < 0.005,
        "kommunkod": rng.choices(_KOMMUNER, _KOMMUN_WEIGHTS)[0], "andrad": b.stamp(changed)}).key = (pid,)
    return p


def _plan_case(rng: random.Random, forman: str, t0: date) -> dict[str, Any]:
    """Dates of one application starting around ``t0`` (SJP: the first day of sickness), with certificates."""
    certs, pf = [], t0
    if forman == "SJP":  # the employer pays days 1-14; certificates cover the whole sick period
        pf = t0 + (14 + (0 if rng.random() < 0.8 else rng.randint(1, 20))) * _DAY
        length = rng.choice((rng.randint(15, 60), rng.randint(15, 60), rng.randint(61, 180), rng.randint(181, 364)))
        pt, inkommit = pf + (length - 1) * _DAY, pf + rng.randint(0, 20) * _DAY
        cuts = sorted(rng.sample(range(10, _days(t0, pt) - 1), k=rng.randint(0, 2))) if _days(t0, pt) > 40 else []
        first_issued = t0 + rng.randint(0, 2) * _DAY
        for i, (a, z) in enumerate(itertools.pairwise([t0, *(t0 + c * _DAY for c in cuts), pt + _DAY])):
            issued = max(first_issued, min(a, inkommit) - rng.randint(0, 5) * _DAY) if i else first_issued
            certs.append((issued, a, z - _DAY))
    elif forman == "FP":
        pt, inkommit = pf + rng.randint(6, 179) * _DAY, pf + rng.randint(-45, 20) * _DAY
    elif forman == "TFP":  # applied for afterwards
        pt = pf + rng.choice((0, 0, 0, 1, 1, 2, 3, 4, 6, 9)) * _DAY
        inkommit = pt + rng.randint(1, 60) * _DAY
    elif forman == "AKS":
        pt, inkommit = pf + rng.randint(29, 179) * _DAY, pf - rng.randint(0, 20) * _DAY
    else:  # BOB: whole months, applied for in advance
        pf = _add_months(t0, 1)
        pt, inkommit = _add_months(pf, rng.choice((6, 12))) - _DAY, pf - rng.randint(5, 40) * _DAY
    kanal = rng.choices(("E_TJANST", "BLANKETT", "TELEFON"), (40, 45, 15) if inkommit.year < 2016 else (80, 12, 8))
    return {"pf": pf, "pt": pt, "inkommit": inkommit, "kanal": kanal[0], "certs": certs,
            "grade": rng.choices((100, 75, 50, 25), (60, 8, 22, 10))[0], "diag": rng.choice(_DIAGNOSER)}


def _add_case(b: _Builder, p: _Person, forman: str, plan: dict[str, Any]) -> _Row:
    """The case row (MOTTAGET until the caller says otherwise) and its certificates."""
    case = b.add("arende", plan["inkommit"], {
        "individ_id": p.id, "forman": forman, "inkommit": plan["inkommit"], "period_from": plan["pf"],
        "period_tom": plan["pt"], "kanal": plan["kanal"], "status": "MOTTAGET", "avslutat": None,
        "andrad": b.stamp(plan["inkommit"])})
    diag, text = plan["diag"]
    for issued, a, z in plan["certs"]:
        b.add("lakarintyg", issued, {"arende_id": case, "utfardat": issued, "diagnoskod": diag,
                                     "sjukskrivningsgrad": plan["grade"], "giltig_from": a, "giltig_tom": z,
                                     "funktionsnedsattning": text, "andrad": b.stamp(issued)})
    return case


def _decision(b: _Builder, p: _Person, case: _Row, forman: str, plan: dict[str, Any], day: date, utfall: str,
              span: tuple[date, date] | None, terms: dict[str, Any] | None = None) -> tuple[_Row, dict[str, Any]]:
    """A decision on ``span`` (None: nothing granted) and the terms its payments follow. Later decisions in the
    same case (INDRAGNING, ATERKRAV) pass the first decision's ``terms``."""
    rng, pf = b.rng, plan["pf"]
    if terms is None:
        terms = {"sgi": None, "daily": None, "omf": None, "monthly": None}
        if forman in ("SJP", "FP", "TFP") and p.employed:  # about 80 % of SGI a day
            factor = 1.025 ** (pf.year - b.as_of.year)
            terms["sgi"] = sgi = int(min(p.income * 1.03 ** (pf.year - b.as_of.year), _PBB10 * factor)) // 100 * 100
            daily = round(sgi * (0.97 if forman == "SJP" else 1) * 0.8 / 365)
            terms["daily"] = min(daily, round(0.75 * _PBB10 * factor * 0.8 / 365)) if forman == "TFP" else daily
        elif forman in ("SJP", "FP", "TFP", "AKS"):
            terms["daily"] = 250 if forman != "AKS" else rng.randint(365, 910)
        if forman == "SJP":
            terms["omf"] = plan["grade"] / 100
        elif forman in _OMFATTNING:
            terms["omf"] = rng.choices(*_OMFATTNING[forman])[0]
        if forman == "BOB":
            terms["monthly"] = rng.randint(5, 50) * 100
    days = None if span is None or forman == "BOB" else _weekdays(*span) if forman == "AKS" else _days(*span)
    a, z = span or (pf, plan["pt"])
    text = _MOTIVERING[utfall].format(f=_FORMAN_TEXT[forman], pf=a, pt=z)
    if forman == "SJP" and span and utfall in ("BIFALL", "DELVIS"):
        text += f" Läkarintyg styrker nedsatt arbetsförmåga med {plan['grade']} procent."
    if rng.random() < 0.15:
        text += " " + rng.choice(_NAMED).format(n=f"{p.fornamn} {p.efternamn}")
    auto = utfall in ("BIFALL", "AVSLAG") and rng.random() < _AUTO.get(forman, 0.02)
    row = b.add("beslut", day, {"arende_id": case, "beslutsdatum": day, "utfall": utfall, "omfattning": terms["omf"],
                                "sgi_sek": terms["sgi"], "dagbelopp_sek": terms["daily"], "antal_dagar": days,
                                "automatiserat": auto, "motivering": text, "andrad": b.stamp(day)})
    return row, terms


def _decide(b: _Builder, p: _Person, case: _Row, forman: str, plan: dict[str, Any],
            day: date) -> tuple[_Row, dict[str, Any], list[tuple[date, date, date, int]]]:
    """The first decision in a case, and its payment plan (avser_from, avser_tom, pay date, brutto)."""
    pf, pt = plan["pf"], plan["pt"]
    utfall = b.rng.choices(("BIFALL", "DELVIS", "AVSLAG"), (92 - _AVSLAG[forman], 8, _AVSLAG[forman]))[0]
    z = pt if utfall == "BIFALL" else pf + int((pt - pf).days * b.rng.uniform(0.4, 0.8)) * _DAY
    z = _month_end(z) if forman == "BOB" else z
    dec, terms = _decision(b, p, case, forman, plan, day, utfall, None if utfall == "AVSLAG" else (pf, z))
    if utfall != "AVSLAG" and b.rng.random() < 0.03 and (z - pf).days > 40:  # later withdrawn part-way
        stop = max(pf + b.rng.randint(20, (z - pf).days) * _DAY, day + _DAY)
        stop = _add_months(stop, 1) if forman == "BOB" else stop
        if stop <= min(z, b.today):
            _decision(b, p, case, forman, plan, stop, "INDRAGNING", (stop, z), terms)
            z = stop - _DAY
    return dec, terms, [] if utfall == "AVSLAG" else _schedule(forman, pf, z, terms, day + 2 * _DAY)


def _schedule(forman: str, a: date, z: date, terms: dict[str, Any],
              earliest: date) -> list[tuple[date, date, date, int]]:
    if forman == "TFP":
        return [(a, z, earliest, round(terms["daily"] * terms["omf"] * _days(a, z)))]
    out, s = [], a
    while s <= z:
        e = min(_month_end(s), z)
        if forman == "BOB":  # paid in advance on the 25th of the month before
            out.append((s, e, max(_add_months(s, -1).replace(day=25), earliest), terms["monthly"]))
        else:  # monthly in arrears; aktivitetsstöd only for programme days (at most 5 a week)
            n = _weekdays(s, e) if forman == "AKS" else _days(s, e)
            out.append((s, e, max(e + 5 * _DAY, earliest), round(terms["daily"] * terms["omf"] * n)))
        s = e + _DAY
    return out


def _pay(b: _Builder, p: _Person, dec: _Row, plan: tuple[date, date, date, int], tax: float, status: str,
         changed: date) -> None:
    a, z, paid, brutto = plan
    skatt = round(brutto * tax)
    b.add("utbetalning", paid, {
        "beslut_id": dec, "individ_id": p.id, "utbetald": paid, "avser_from": a, "avser_tom": z,
        "brutto_sek": brutto, "skatt_sek": skatt, "netto_sek": brutto - skatt, "konto": p.konto, "status": status,
        "andrad": b.stamp(changed)})


# ---------------------------------------------------------------------------------------------------- seed
def _life(b: _Builder, p: _Person, forman: str, t0: date) -> None:
    """One case from application to closure, as the operational system shows it on ``b.today``."""
    rng, today = b.rng, b.today
    plan = _plan_case(rng, forman, t0)
    if plan["inkommit"] > today:
        return
    if forman in ("FP", "TFP"):
        p.leave.append((forman, plan["pf"], plan["pt"]))
    case = _add_case(b, p, forman, plan)
    decided = plan["inkommit"] + rng.randint(*_DECIDE_DAYS[forman]) * _DAY
    if decided > today:
        utreds = plan["inkommit"] + rng.randint(1, 4) * _DAY
        if utreds <= today:
            case.values.update(status="UTREDS", andrad=b.stamp(utreds))
        return
    dec, terms, payments = _decide(b, p, case, forman, plan, decided)
    events = [r.values["beslutsdatum"] for r in b.rows["beslut"][-2:] if r.values["arende_id"] is case]
    reclaimed = 0
    if payments and rng.random() < 0.03:  # återkrav of the last payments, after they were paid
        when = payments[-1][2] + rng.randint(10, 60) * _DAY
        if when <= today:
            reclaimed = rng.randint(1, min(2, len(payments)))
            _decision(b, p, case, forman, plan, when, "ATERKRAV", (payments[-reclaimed][0], payments[-1][1]), terms)
            events.append(when)
    tax = 0.0 if forman == "BOB" else p.tax
    for i, pay in enumerate(payments):
        cancelled = pay[2] - rng.randint(1, 3) * _DAY
        if i >= len(payments) - reclaimed:
            _pay(b, p, dec, pay, tax, "ATERKRAVD", events[-1])
        elif rng.random() < 0.01 and decided <= cancelled <= today:
            _pay(b, p, dec, pay, tax, "MAKULERAD", cancelled)
        else:
            _pay(b, p, dec, pay, tax, *(("UTBETALD", pay[2]) if pay[2] <= today else ("PLANERAD", decided)))
    closed = max(events + [pay[2] for pay in payments]) + rng.randint(1, 10) * _DAY
    if closed <= today:
        case.values.update(status="AVSLUTAT", avslutat=closed, andrad=b.stamp(closed))
    else:
        case.values.update(status="BESLUTAT", andrad=b.stamp(max(events)))


def _cases_for(b: _Builder, p: _Person) -> None:
    rng, today = b.rng, b.today
    start = max(_years_after(today, -13), _years_after(p.birth, 18))
    if start >= today:
        return
    if p.employed:
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            if t0 := _between(rng, max(start, p.emp_start), p.emp_end or today):
                _life(b, p, "SJP", t0)
    for _ in range(rng.randint(1, 3) if rng.random() < 0.5 else 0):  # children
        if (child := _between(rng, max(start, _years_after(p.birth, 20)), today)) is None:
            break
        for _ in range(rng.randint(1, 3)):
            _life(b, p, "FP", child + rng.randint(0, 700) * _DAY)
        for _ in range(rng.randint(0, 3) if p.employed else 0):
            _life(b, p, "TFP", child + rng.randint(200, 3600) * _DAY)
    if (not p.employed or p.emp_start > start + 365 * _DAY) and rng.random() < 0.35:
        for _ in range(rng.randint(1, 2)):
            if t0 := _between(rng, start, p.emp_start if p.employed else today):
                _life(b, p, "AKS", t0)
    if (p.income < 320_000 or not p.employed) and rng.random() < 0.3:
        for _ in range(rng.randint(1, 3)):
            if t0 := _between(rng, start, today):
                _life(b, p, "BOB", t0)


def _agi_row(b: _Builder, p: _Person, ag_id: str, spec: int, formaner: int, m: date, filed: date) -> None:
    kontant = int(p.income * 1.03 ** (m.year - b.as_of.year) / 12 * b.rng.uniform(0.97, 1.05))
    absence = next(((max(a, m), f) for f, a, z in p.leave if a <= _month_end(m) and z >= m), (None, None))
    b.add("agi_iu", m, {
        "ag_id": ag_id, "period": f"{m:%Y%m}", "betalningsmottagare": p.pnr, "spec_nr": spec,
        "kontant_011": kontant, "skatt_001": round(kontant * p.tax), "formaner_012": formaner,
        "franvaro_datum": absence[0] if m.year >= 2025 else None,  # absence is declared from period 202501
        "franvaro_typ": None if m.year < 2025 or absence[1] is None else
        "TILLFALLIG_FORALDRAPENNING" if absence[1] == "TFP" else "FORALDRAPENNING", "andrad": b.stamp(filed)})


def _agi(b: _Builder, people: list[_Person]) -> None:
    rng, last = b.rng, _last_declared_period(b.today)
    employers = []
    for _ in range(max(20, len(people) // 25)):  # organisation numbers (16 + 10 digits), never personnummer
        nine = f"5569{rng.randrange(10 ** 5):05d}"  # third digit >= 2: "month" 69, so never a valid pnr
        employers.append(f"16{nine}{luhn_check_digit(nine)}")
    for p in (p for p in people if p.employed):
        ag_id, spec = rng.choice(employers), rng.choice((1, 1, 1, 2))
        formaner = rng.randint(10, 35) * 100 if rng.random() < 0.2 else 0
        m, end = max(date(2018, 7, 1), p.emp_start.replace(day=1)), min(last, (p.emp_end or b.today).replace(day=1))
        while m <= end:
            _agi_row(b, p, ag_id, spec, formaner, m, _add_months(m, 1).replace(day=rng.randint(1, 12)))
            m = _add_months(m, 1)


def seed(engine: sa.Engine, *, scale: int = 1, as_of: datetime | None = None, seed: int = 42) -> dict[str, int]:
    """Fill the empty demo tables with ``1000 * scale`` people and their cases, decisions, payments, certificates
    and employer declarations over the 13 years before ``as_of`` (default: today 00:00 UTC). Returns rows per
    table. Deterministic given ``seed`` and ``as_of``. TerminalError if a table already has rows."""
    if scale < 1:
        raise ValueError(f"scale must be 1 or more, got {scale}")
    dialect = _dialect(engine)
    as_of = _utc(as_of) if as_of else datetime.combine(datetime.now(UTC).date(), time(0), UTC)
    b = _Builder(random.Random(seed), as_of, as_of.date())
    people = _people(b, 1000 * scale)
    for p in people:
        _cases_for(b, p)
    _agi(b, people)
    rows = b.tuples({})
    with engine.begin() as conn:
        for t in TABLES:
            if conn.execute(sa.text(f"SELECT 1 FROM {t} LIMIT 1")).first() is not None:
                raise TerminalError(f"table {t} already has rows: seed fills an empty demo store. Drop the tables "
                                    "(or use a fresh database/schema), or call churn() to change existing data.")
        for t in TABLES:
            _insert(conn, dialect, t, rows[t])
    return {t: len(rows[t]) for t in TABLES}


def _people(b: _Builder, n: int) -> list[_Person]:
    rng, today, pool = b.rng, b.today, personnummer_pool()
    adults = [x for x in pool if int(x[:4]) <= today.year - 22]
    young = [x for x in pool if int(x[:4]) > today.year - 22]
    chosen = rng.sample(adults, min(len(adults), n - n // 10))
    if n - len(chosen) > len(young):
        raise ValueError(f"the test-number rule gives {len(pool)} people; {n} were asked for")
    chosen += rng.sample(young, n - len(chosen))
    rng.shuffle(chosen)
    people = []
    for pid, pnr in enumerate(chosen, 1):
        p = _new_person(b, pid, pnr, _between(rng, max(_birth(pnr), _years_after(today, -13)), today) or today)
        adult = _years_after(p.birth, 18)
        if adult <= today - 90 * _DAY and rng.random() < 0.45:
            p.employed = True
            p.emp_start = _between(rng, max(adult, _years_after(today, -16)), today - 90 * _DAY) or adult
            if rng.random() < 0.4:
                p.emp_end = _between(rng, p.emp_start + 180 * _DAY, today)
        people.append(p)
    return people


# ---------------------------------------------------------------------------------------------------- churn


from lifecycle.demo_churn import churn  # noqa: E402  (re-exported: demo.churn)

__all__ = ["churn", "create_schema", "seed"]
