"""The demo hot store: create its schema, seed coherent synthetic data, and churn it like the operational system.

People use only Skatteverket's test personnummer (domain.md): every date 1976-01-01..2013-12-31 with birth numbers
238 and 239 and a Luhn check digit, except the dates in ``EXCLUDED_DATES`` (a number missing from the published
list). Cases, decisions, payments, certificates and employer declarations follow the benefit rules in domain.md.
Everything is deterministic given ``seed`` and ``as_of``; all timestamps are UTC and never later than ``as_of``.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from zones.errors import TerminalError
from zones.personnummer import luhn_check_digit

__all__ = ["COLUMNS", "EXCLUDED_DATES", "SQL_DIR", "TABLES", "churn", "create_schema", "personnummer_pool", "seed"]

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
COLUMNS: dict[str, tuple[str, ...]] = {
    "individ": ("individ_id", "personnummer", "id_typ", "fornamn", "efternamn", "fodelsear", "kon", "kommunkod",
                "skyddad_identitet", "andrad"),
    "arende": ("arende_id", "individ_id", "forman", "inkommit", "period_from", "period_tom", "kanal", "status",
               "avslutat", "andrad"),
    "beslut": ("beslut_id", "arende_id", "beslutsdatum", "utfall", "omfattning", "sgi_sek", "dagbelopp_sek",
               "antal_dagar", "automatiserat", "motivering", "andrad"),
    "utbetalning": ("utbetalning_id", "beslut_id", "individ_id", "utbetald", "avser_from", "avser_tom", "brutto_sek",
                    "skatt_sek", "netto_sek", "konto", "status", "andrad"),
    "lakarintyg": ("intyg_id", "arende_id", "utfardat", "diagnoskod", "sjukskrivningsgrad", "giltig_from",
                   "giltig_tom", "funktionsnedsattning", "andrad"),
    "agi_iu": ("agi_id", "ag_id", "period", "betalningsmottagare", "spec_nr", "kontant_011", "skatt_001",
               "formaner_012", "franvaro_datum", "franvaro_typ", "andrad"),
}
TABLES = tuple(COLUMNS)
_DATE_COLS = {"inkommit", "period_from", "period_tom", "avslutat", "beslutsdatum", "utbetald", "avser_from",
              "avser_tom", "utfardat", "giltig_from", "giltig_tom", "franvaro_datum"}
_BOOL_COLS = {"skyddad_identitet", "automatiserat"}

# Birth dates where 238 or 239 (or both) is not on skatteverket-testpersonnummer.txt: 25 numbers on 21 dates.
EXCLUDED_DATES = frozenset(date.fromisoformat(d) for d in (
    "1976-01-01", "1980-01-01", "1989-12-20", "1990-01-01", "1990-01-02", "1990-01-04", "1990-01-05", "1990-01-06",
    "1990-01-08", "1990-01-09", "1990-01-13", "2000-12-18", "2001-03-03", "2001-11-04", "2002-10-16", "2002-12-27",
    "2005-05-09", "2007-09-11", "2007-12-28", "2010-12-11", "2011-12-30"))
_POOL_FIRST, _POOL_LAST = date(1976, 1, 1), date(2013, 12, 31)

_FEMALE = ("Anna", "Eva", "Maria", "Karin", "Sara", "Emma", "Lena", "Kerstin", "Ingrid", "Johanna", "Linnea", "Elin",
           "Ida", "Malin", "Sofia", "Hanna", "Amanda", "Julia", "Frida", "Camilla", "Elsa", "Maja", "Astrid", "Fatima")
_MALE = ("Erik", "Lars", "Karl", "Anders", "Johan", "Mikael", "Nils", "Jonas", "Oskar", "Lucas", "Viktor", "Daniel",
         "Fredrik", "Henrik", "Emil", "Axel", "Hugo", "Filip", "Mohammed", "Omar", "Elias", "Gustav", "Magnus", "Olof")
_EFTERNAMN = ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson", "Svensson",
              "Gustafsson", "Pettersson", "Jonsson", "Jansson", "Hansson", "Bengtsson", "Lindberg", "Jakobsson",
              "Magnusson", "Lindström", "Olofsson", "Lindqvist", "Lindgren", "Axelsson", "Bergström", "Lundberg",
              "Lundgren", "Mattsson", "Berglund", "Fredriksson", "Sandberg", "Henriksson", "Forsberg", "Sjöberg",
              "Wallin", "Engström", "Eklund", "Danielsson", "Håkansson", "Hosseini", "Yilmaz", "Nguyen", "Abdi")
_KOMMUNER = (("0180", 30), ("1480", 20), ("1280", 12), ("0380", 8), ("0580", 6), ("1880", 6), ("1980", 6),
             ("0680", 5), ("2480", 5), ("0581", 5), ("1281", 5), ("2281", 4), ("1380", 4), ("0780", 4), ("2180", 4),
             ("1780", 4), ("0880", 3), ("2380", 3), ("2580", 3), ("0114", 3), ("1490", 3), ("0484", 2), ("2584", 2))
_CLEARING = (("5001", 7), ("5253", 7), ("6152", 9), ("6789", 9), ("8327-9", 10), ("8105-9", 10), ("9020", 7))
_DIAGNOSER = (
    ("F32.1", "Nedstämdhet, trötthet och koncentrationssvårigheter."),
    ("F43.8A", "Kognitiv trötthet, minnessvårigheter och sömnstörning."),
    ("F41.1", "Ångest och oro som begränsar uthållighet och koncentration."),
    ("M54.5", "Smärta i ländryggen, nedsatt rörlighet vid böjning och lyft."),
    ("M51.1", "Utstrålande smärta i benet, kan inte sitta eller stå länge."),
    ("M75.1", "Nedsatt kraft i axeln, smärta vid arbete över axelhöjd."),
    ("S82.6", "Gipsbehandlad fotledsfraktur, kan inte belasta foten."),
    ("J06.9", "Feber och nedsatt allmäntillstånd."),
    ("M17.1", "Knäsmärta vid gång och stående, kort gångsträcka."),
    ("C50.9", "Pågående cytostatikabehandling med uttalad trötthet."),
    ("I21.9", "Nedsatt ork efter hjärtinfarkt, pågående rehabilitering."),
    ("G43.0", "Återkommande migränanfall med ljus- och ljudkänslighet."))
_FORMAN_TEXT = {"SJP": "sjukpenning", "FP": "föräldrapenning", "TFP": "tillfällig föräldrapenning",
                "AKS": "aktivitetsstöd", "BOB": "bostadsbidrag"}
_MOTIVERING = {
    "BIFALL": "Ansökan om {f} beviljas för perioden {pf}–{pt}.",
    "DELVIS": "Ansökan om {f} beviljas delvis, för perioden {pf}–{pt}. Villkoren är inte uppfyllda för resten.",
    "AVSLAG": "Ansökan om {f} avslås eftersom villkoren för ersättning inte är uppfyllda.",
    "INDRAGNING": "Rätten till {f} upphör från och med {pf} eftersom förutsättningarna inte längre finns.",
    "ATERKRAV": "Felaktigt utbetald {f} för perioden {pf}–{pt} återkrävs."}
_NAMED = ("{n} har kompletterat ansökan med nya uppgifter.", "Telefonsamtal med {n} om ansökan.",
          "Uppgifter om {n} har hämtats in från arbetsgivaren.")
_OMFATTNING = {"FP": ((1.0, 0.75, 0.5, 0.25, 0.125), (60, 5, 20, 10, 5)),
               "TFP": ((1.0, 0.75, 0.5, 0.25, 0.125), (70, 3, 15, 8, 4)), "AKS": ((1.0, 0.75, 0.5), (80, 5, 15))}
_AUTO = {"TFP": 0.7, "FP": 0.4, "BOB": 0.3, "AKS": 0.2}  # share of automated decisions
_PBB10 = 588_000  # 10 prisbasbelopp 2025, the SGI ceiling; scaled back 2.5 % a year for older years


@functools.cache
def personnummer_pool() -> tuple[str, ...]:
    """Every number the generator may use: YYYYMMDD + 238/239 + Luhn for 1976-01-01..2013-12-31, minus
    ``EXCLUDED_DATES``. Ordered by date, then birth number (27,718 numbers)."""
    out: list[str] = []
    d = _POOL_FIRST
    while d <= _POOL_LAST:
        if d not in EXCLUDED_DATES:
            ymd = d.strftime("%Y%m%d")
            out.extend(f"{ymd}{nnn}{luhn_check_digit(ymd[2:] + nnn)}" for nnn in ("238", "239"))
        d += timedelta(days=1)
    return tuple(out)


# ---------------------------------------------------------------------------------------------------- helpers
def _dialect(engine: sa.Engine) -> str:
    name = engine.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise TerminalError(f"the demo hot store supports sqlite and postgresql, not {name!r}: point the engine at "
                            "one of them")
    return name


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _month_end(d: date) -> date:
    return _add_months(d.replace(day=1), 1) - timedelta(days=1)


def _add_months(d: date, n: int) -> date:
    m = d.year * 12 + d.month - 1 + n
    return date(m // 12, m % 12 + 1, 1)


def _days(a: date, b: date) -> int:
    return (b - a).days + 1


def _weekdays(a: date, b: date) -> int:
    return sum(1 for i in range((b - a).days + 1) if (a + timedelta(days=i)).weekday() < 5)


def _last_declared_period(today: date) -> date:
    """First day of the newest AGI period that is filed by today (the deadline is the 12th of the next month)."""
    return _add_months(today.replace(day=1), -1 if today.day >= 12 else -2)


def _sgi(income: int, year: int, as_of_year: int) -> int:
    factor = 1.025 ** (year - as_of_year)
    return int(min(income * 1.03 ** (year - as_of_year), _PBB10 * factor) // 100 * 100)


def _to_date(v: Any) -> date:
    return v.date() if isinstance(v, datetime) else v if isinstance(v, date) else date.fromisoformat(str(v)[:10])


def _to_ts(v: Any) -> datetime:
    return _utc(v if isinstance(v, datetime) else datetime.fromisoformat(str(v)))


def _db(dialect: str, v: Any) -> Any:
    """A Python value as the dialect stores it (SQLite: ISO text dates, 6-digit-fraction UTC text, 0/1)."""
    if dialect == "postgresql":
        return v
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, date):
        return v.isoformat()
    return int(v) if isinstance(v, bool) else v


def _insert(conn: sa.Connection, dialect: str, table: str, rows: list[tuple[Any, ...]]) -> None:
    cols = COLUMNS[table]
    if not rows:
        return
    if dialect == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
        return
    convert = [i for i, c in enumerate(cols) if c in _DATE_COLS or c in _BOOL_COLS or c == "andrad"]
    stmt = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    for start in range(0, len(rows), 5000):
        chunk = [list(r) for r in rows[start:start + 5000]]
        for r in chunk:
            for i in convert:
                r[i] = _db(dialect, r[i])
        conn.exec_driver_sql(stmt, [tuple(r) for r in chunk])


def _update(conn: sa.Connection, dialect: str, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    pk = COLUMNS[table][0]
    sets = ", ".join(f"{c} = :{c}" for c in rows[0] if c != pk)
    conn.execute(sa.text(f"UPDATE {table} SET {sets} WHERE {pk} = :{pk}"),
                 [{k: _db(dialect, v) for k, v in r.items()} for r in rows])


def create_schema(engine: sa.Engine) -> None:
    """Create the six demo tables and their indexes (``sql/hot_<dialect>.sql``); safe to run again."""
    text = (SQL_DIR / f"hot_{_dialect(engine)}.sql").read_text(encoding="utf-8")
    body = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    with engine.begin() as conn:
        for stmt in (s.strip() for s in body.split(";")):
            if stmt:
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
    birth: date
    fornamn: str
    efternamn: str
    income: int
    tax: float
    konto: str
    employed: bool = False
    emp_start: date = date.min
    emp_end: date | None = None
    leave: list[tuple[str, date, date]] = field(default_factory=list)


class _Builder:
    """Collects rows; ids are assigned in business-date order when the rows are written."""

    def __init__(self, rng: random.Random, as_of: datetime, today: date) -> None:
        self.rng, self.as_of, self.today = rng, as_of, today
        self.rows: dict[str, list[_Row]] = {t: [] for t in TABLES}
        self.window: timedelta | None = None  # churn: every change is stamped within `window` before as_of

    def add(self, table: str, key_date: date | str, values: dict[str, Any]) -> _Row:
        row = _Row((key_date, sum(map(len, self.rows.values()))), values)
        self.rows[table].append(row)
        return row

    def stamp(self, d: date) -> datetime:
        """A realistic modification time on business day ``d`` (office hours, UTC), never after ``as_of``."""
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
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table, rows in self.rows.items():
            cols = COLUMNS[table]
            refs = [i for i, c in enumerate(cols) if i and c in ("arende_id", "beslut_id")]  # values are _Rows
            out[table] = []
            for r in rows:
                values = [r.id, *map(r.values.__getitem__, cols[1:])]
                for i in refs:
                    values[i] = values[i].id
                out[table].append(tuple(values))
        return out


def _new_person(rng: random.Random, pid: int, pnr: str) -> tuple[_Person, dict[str, Any]]:
    woman = int(pnr[10]) % 2 == 0
    p = _Person(pid, pnr, date(int(pnr[:4]), int(pnr[4:6]), int(pnr[6:8])),
                rng.choice(_FEMALE if woman else _MALE), rng.choice(_EFTERNAMN),
                int(rng.lognormvariate(math.log(400_000), 0.3)) // 100 * 100, rng.randint(29, 34) / 100,
                (lambda c: f"{c[0]} {rng.randrange(10 ** (c[1] - 1), 10 ** c[1])}")(rng.choice(_CLEARING)))
    values = {"personnummer": pnr, "id_typ": "PNR", "fornamn": p.fornamn, "efternamn": p.efternamn,
              "fodelsear": p.birth.year, "kon": "K" if woman else "M",
              "kommunkod": rng.choices([k for k, _ in _KOMMUNER], [w for _, w in _KOMMUNER])[0],
              "skyddad_identitet": rng.random() < 0.005}
    return p, values


def _plan_case(rng: random.Random, forman: str, t0: date) -> dict[str, Any]:
    """Dates of one application starting around ``t0`` (for SJP: the first day of sickness), with certificates."""
    certs: list[tuple[date, date, date]] = []
    if forman == "SJP":
        pf = t0 + timedelta(days=14 + (0 if rng.random() < 0.8 else rng.randint(1, 20)))  # day 15 or later
        length = rng.choice((rng.randint(15, 60), rng.randint(15, 60), rng.randint(61, 180), rng.randint(181, 364)))
        pt, inkommit = pf + timedelta(days=length - 1), pf + timedelta(days=rng.randint(0, 20))
        cuts = sorted(rng.sample(range(10, _days(t0, pt) - 1), k=rng.randint(0, 2))) if _days(t0, pt) > 40 else []
        bounds = [t0, *(t0 + timedelta(days=c) for c in cuts), pt + timedelta(days=1)]
        first_issued = t0 + timedelta(days=rng.randint(0, 2))
        for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
            issued = first_issued if i == 0 else max(first_issued, min(a, inkommit) - timedelta(days=rng.randint(0, 5)))
            certs.append((issued, a, b - timedelta(days=1)))
    elif forman == "FP":
        pf = t0
        pt, inkommit = pf + timedelta(days=rng.randint(7, 180) - 1), pf + timedelta(days=rng.randint(-45, 20))
    elif forman == "TFP":
        pf = t0
        pt = pf + timedelta(days=rng.choice((1, 1, 1, 2, 2, 3, 4, 5, 7, 10)) - 1)
        inkommit = pt + timedelta(days=rng.randint(1, 60))
    elif forman == "AKS":
        pf = t0
        pt, inkommit = pf + timedelta(days=rng.randint(30, 180) - 1), pf - timedelta(days=rng.randint(0, 20))
    else:  # BOB: whole months, applied for in advance
        pf = _add_months(t0.replace(day=1), 1)
        pt, inkommit = _add_months(pf, rng.choice((6, 12))) - timedelta(days=1), pf - timedelta(days=rng.randint(5, 40))
    kanal = rng.choices(("E_TJANST", "BLANKETT", "TELEFON"),
                        (40, 45, 15) if inkommit.year < 2016 else (80, 12, 8))[0]
    return {"pf": pf, "pt": pt, "inkommit": inkommit, "kanal": kanal, "certs": certs,
            "grade": rng.choices((100, 75, 50, 25), (60, 8, 22, 10))[0], "diag": rng.choice(_DIAGNOSER)}


def _add_case(b: _Builder, p: _Person, forman: str, plan: dict[str, Any]) -> _Row:
    """The case row (status MOTTAGET until the caller says otherwise) and its certificates."""
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
    """A decision row on ``span`` (None: nothing granted), plus the terms its payments follow. A later decision
    in the same case (INDRAGNING, ATERKRAV) passes the first decision's ``terms``."""
    rng, pf = b.rng, plan["pf"]
    if terms is None:
        terms = {"sgi": None, "daily": None, "omf": None, "monthly": None}
        if forman in ("SJP", "FP", "TFP") and p.employed:
            factor = 1.025 ** (pf.year - b.as_of.year)
            terms["sgi"] = sgi = _sgi(p.income, pf.year, b.as_of.year)
            daily = round(sgi * (0.97 if forman == "SJP" else 1) * 0.8 / 365)
            terms["daily"] = min(daily, round(0.75 * _PBB10 * factor * 0.8 / 365)) if forman == "TFP" else daily
        elif forman in ("SJP", "FP", "TFP"):
            terms["daily"] = 250  # grundnivå
        elif forman == "AKS":
            terms["daily"] = rng.randint(365, 910)
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


def _schedule(forman: str, a: date, z: date, terms: dict[str, Any]) -> list[tuple[date, date, date, int]]:
    """Payments (avser_from, avser_tom, natural pay date, brutto) for the granted period a..z."""
    if forman == "TFP":
        return [(a, z, z, round(terms["daily"] * terms["omf"] * _days(a, z)))]
    out, s = [], a
    while s <= z:
        e = min(_month_end(s), z)
        if forman == "BOB":  # paid in advance around the 25th of the month before
            out.append((s, e, _add_months(s.replace(day=1), -1).replace(day=25), terms["monthly"]))
        else:
            n = _weekdays(s, e) if forman == "AKS" else _days(s, e)  # aktivitetsstöd: programme days only
            out.append((s, e, e + timedelta(days=5), round(terms["daily"] * terms["omf"] * n)))
        s = e + timedelta(days=1)
    return out


def _pay(b: _Builder, p: _Person, dec: _Row, paid: date, a: date, z: date, brutto: int, tax: float, status: str,
         changed: date) -> _Row:
    skatt = round(brutto * tax)
    return b.add("utbetalning", paid, {
        "beslut_id": dec, "individ_id": p.id, "utbetald": paid, "avser_from": a, "avser_tom": z,
        "brutto_sek": brutto, "skatt_sek": skatt, "netto_sek": brutto - skatt, "konto": p.konto, "status": status,
        "andrad": b.stamp(changed)})


def _years_after(d: date, n: int) -> date:
    try:
        return d.replace(year=d.year + n)
    except ValueError:  # 29 February
        return d.replace(year=d.year + n, day=28)


def _between(rng: random.Random, a: date, z: date) -> date | None:
    return a + timedelta(days=rng.randint(0, (z - a).days)) if z >= a else None


# ---------------------------------------------------------------------------------------------------- seed
_DECIDE_DAYS = {"SJP": (5, 40), "FP": (3, 20), "TFP": (1, 15), "AKS": (5, 20), "BOB": (10, 45)}
_AVSLAG = {"SJP": 12, "FP": 3, "TFP": 5, "AKS": 8, "BOB": 15}


def _life(b: _Builder, p: _Person, forman: str, t0: date) -> None:
    """One case from application to closure, as the operational system shows it on ``b.today``."""
    rng, today, day = b.rng, b.today, timedelta(days=1)
    plan = _plan_case(rng, forman, t0)
    pf, pt, inkommit = plan["pf"], plan["pt"], plan["inkommit"]
    if inkommit > today:
        return
    if forman in ("FP", "TFP"):
        p.leave.append((forman, pf, pt))
    case = _add_case(b, p, forman, plan)
    decided = inkommit + timedelta(days=rng.randint(*_DECIDE_DAYS[forman]))
    if decided > today:
        utreds = inkommit + timedelta(days=rng.randint(1, 4))
        if utreds <= today:
            case.values.update(status="UTREDS", andrad=b.stamp(utreds))
        return
    utfall = rng.choices(("BIFALL", "DELVIS", "AVSLAG"), (92 - _AVSLAG[forman], 8, _AVSLAG[forman]))[0]
    z = pt if utfall == "BIFALL" else pf + timedelta(days=int((pt - pf).days * rng.uniform(0.4, 0.8)))
    z = _month_end(z) if forman == "BOB" else z
    dec, terms = _decision(b, p, case, forman, plan, decided, utfall, None if utfall == "AVSLAG" else (pf, z))
    events = [decided]
    if utfall != "AVSLAG" and rng.random() < 0.03 and (z - pf).days > 40:  # withdrawn part-way
        stop = max(pf + timedelta(days=rng.randint(20, (z - pf).days)), decided + day)
        stop = _add_months(stop.replace(day=1), 1) if forman == "BOB" else stop
        if stop <= min(z, today):
            _decision(b, p, case, forman, plan, stop, "INDRAGNING", (stop, z), terms)
            events.append(stop)
            z = stop - day
    sched = [] if utfall == "AVSLAG" else _schedule(forman, pf, z, terms)
    paid_on = [max(natural, decided + 2 * day) for _, _, natural, _ in sched]
    reclaimed: set[int] = set()
    if sched and rng.random() < 0.03:  # återkrav after the last payment
        when = max(paid_on) + timedelta(days=rng.randint(10, 60))
        if when <= today:
            reclaimed = set(range(max(0, len(sched) - rng.randint(1, 2)), len(sched)))
            first = min(reclaimed)
            _decision(b, p, case, forman, plan, when, "ATERKRAV", (sched[first][0], sched[-1][1]), terms)
            events.append(when)
    tax = 0.0 if forman == "BOB" else p.tax
    for i, ((a, e, _, brutto), paid) in enumerate(zip(sched, paid_on, strict=True)):
        planned = max(decided, paid - timedelta(days=14))
        cancel = paid - timedelta(days=rng.randint(1, 3))
        if i in reclaimed:
            _pay(b, p, dec, paid, a, e, brutto, tax, "ATERKRAVD", events[-1])
        elif rng.random() < 0.01 and planned <= cancel <= today:
            _pay(b, p, dec, paid, a, e, brutto, tax, "MAKULERAD", cancel)
        elif paid <= today:
            _pay(b, p, dec, paid, a, e, brutto, tax, "UTBETALD", paid)
        elif planned <= today:
            _pay(b, p, dec, paid, a, e, brutto, tax, "PLANERAD", planned)
    closed = max(events + paid_on) + timedelta(days=rng.randint(1, 10))
    if closed <= today:
        case.values.update(status="AVSLUTAT", avslutat=closed, andrad=b.stamp(closed))
    else:
        case.values.update(status="BESLUTAT", andrad=b.stamp(max(e for e in events if e <= today)))


def _cases_for(b: _Builder, p: _Person) -> None:
    rng, today = b.rng, b.today
    start = max(_years_after(today, -13), _years_after(p.birth, 18))
    if start >= today:
        return
    if p.employed:
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            if t0 := _between(rng, max(start, p.emp_start), p.emp_end or today):
                _life(b, p, "SJP", t0)
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 3)):
            child = _between(rng, max(start, _years_after(p.birth, 20)), today)
            if child is None:
                break
            for _ in range(rng.randint(1, 3)):
                _life(b, p, "FP", child + timedelta(days=rng.randint(0, 700)))
            for _ in range(rng.randint(0, 3) if p.employed else 0):
                _life(b, p, "TFP", child + timedelta(days=rng.randint(200, 3600)))
    if (not p.employed or p.emp_start > start + timedelta(days=365)) and rng.random() < 0.35:
        for _ in range(rng.randint(1, 2)):
            if t0 := _between(rng, start, p.emp_start if p.employed else today):
                _life(b, p, "AKS", t0)
    if (p.income < 320_000 or not p.employed) and rng.random() < 0.3:
        for _ in range(rng.randint(1, 3)):
            if t0 := _between(rng, start, today):
                _life(b, p, "BOB", t0)


def _orgnr(rng: random.Random) -> str:
    nine = f"55{rng.randrange(10**7):07d}"
    return f"16{nine}{luhn_check_digit(nine)}"


def _agi_row(b: _Builder, p: _Person, ag_id: str, spec: int, formaner: int, m: date, filed: date) -> _Row:
    kontant = int(p.income * 1.03 ** (m.year - b.as_of.year) / 12 * b.rng.uniform(0.97, 1.05))
    franvaro: tuple[date | None, str | None] = (None, None)
    if m >= date(2025, 1, 1):  # absence data is declared from period 202501
        for forman, a, z in p.leave:
            if a <= _month_end(m) and z >= m:
                franvaro = (max(a, m), "TILLFALLIG_FORALDRAPENNING" if forman == "TFP" else "FORALDRAPENNING")
                break
    return b.add("agi_iu", m, {"ag_id": ag_id, "period": f"{m:%Y%m}", "betalningsmottagare": p.pnr, "spec_nr": spec,
                               "kontant_011": kontant, "skatt_001": round(kontant * p.tax), "formaner_012": formaner,
                               "franvaro_datum": franvaro[0], "franvaro_typ": franvaro[1], "andrad": b.stamp(filed)})


def _agi(b: _Builder, people: list[_Person]) -> None:
    rng, last = b.rng, _last_declared_period(b.today)
    employers = [_orgnr(rng) for _ in range(max(20, len(people) // 25))]
    for p in people:
        if not p.employed:
            continue
        ag_id, spec = rng.choice(employers), rng.choice((1, 1, 1, 2))
        formaner = rng.randint(10, 35) * 100 if rng.random() < 0.2 else 0
        m, end = max(date(2018, 7, 1), p.emp_start.replace(day=1)), min(last, (p.emp_end or b.today).replace(day=1))
        while m <= end:
            _agi_row(b, p, ag_id, spec, formaner, m, _add_months(m, 1).replace(day=rng.randint(1, 12)))
            m = _add_months(m, 1)


def seed(engine: sa.Engine, *, scale: int = 1, as_of: datetime | None = None, seed: int = 42) -> dict[str, int]:
    """Fill the (empty) demo tables: ``1000 * scale`` people and their cases, decisions, payments, certificates
    and employer declarations over the 13 years before ``as_of`` (default: today 00:00 UTC). Returns rows per
    table. Deterministic given ``seed`` and ``as_of``. Raises TerminalError if a table already has rows."""
    if scale < 1:
        raise ValueError(f"scale must be 1 or more, got {scale}")
    dialect = _dialect(engine)
    as_of = _utc(as_of) if as_of else datetime.combine(datetime.now(UTC).date(), time(0), UTC)
    rng = random.Random(seed)
    b = _Builder(rng, as_of, as_of.date())
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
    rng, today = b.rng, b.today
    pool = personnummer_pool()
    born_by = str(today.year - 22)
    adults = [x for x in pool if x[:4] <= born_by]
    young = [x for x in pool if x[:4] > born_by]
    chosen = rng.sample(adults, min(len(adults), n - n // 10))
    if n - len(chosen) > len(young):
        raise ValueError(f"the test-number rule gives {len(pool)} people; scale {n // 1000} needs {n}")
    chosen += rng.sample(young, n - len(chosen))
    rng.shuffle(chosen)
    people = []
    for pid, pnr in enumerate(chosen, 1):
        p, values = _new_person(rng, pid, pnr)
        adult = _years_after(p.birth, 18)
        if adult <= today - timedelta(days=90) and rng.random() < 0.45:
            p.employed = True
            p.emp_start = _between(rng, max(adult, _years_after(today, -16)), today - timedelta(days=90)) or adult
            if rng.random() < 0.4:
                p.emp_end = _between(rng, p.emp_start + timedelta(days=180), today)
        changed = _between(rng, max(p.birth, _years_after(today, -13)), today) or today
        row = b.add("individ", 0, {**values, "andrad": b.stamp(changed)})
        row.key = (pid,)
        people.append(p)
    return people


# ---------------------------------------------------------------------------------------------------- churn
def churn(engine: sa.Engine, *, as_of: datetime, seed: int, fraction: float = 0.02) -> dict[str, int]:
    """One run of the operational system at ``as_of``; returns the rows inserted or updated per table.

    New people and new cases (MOTTAGET, with certificates for sickness); about ``fraction / 2`` of the case count
    advances one step (MOTTAGET→UTREDS→BESLUTAT with a decision and planned payments→next planned payment or
    AVSLUTAT); planned payments that fall due are paid; a few old payments get an amount correction (netto
    recomputed) and a few AGI rows a correction; employers file the newest AGI period. Every changed row gets
    ``andrad`` within 5 minutes before ``as_of`` and after every earlier ``andrad``; new ids continue from the
    current maximum. Raises ValueError if ``as_of`` is not after the newest ``andrad`` (the clock only moves on).
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
        b.today = (as_of - b.window).date()
        counts, max_id = ({t: int(s[i]) for t, s in stats.items()} for i in (0, 1))
        filed = _last_declared_period(newest.date()) if newest else None
        updates = _churn_changes(b, q, counts, max_id, fraction, filed)
        rows = b.tuples({t: int(s[1]) + 1 for t, s in stats.items()})
        changed = {t: len(rows[t]) for t in TABLES}
        for t in TABLES:
            _insert(conn, dialect, t, rows[t])
        for t, batches in updates.items():
            for batch in batches:
                _update(conn, dialect, t, batch)
                changed[t] += len(batch)
    return changed


def _birth(pnr: str) -> date:
    try:
        return date(int(pnr[:4]), int(pnr[4:6]), int(pnr[6:8]) % 60)
    except ValueError:  # a deliberately bad row (quality-gate tests): any adult date will do
        return date(1980, 1, 1)


def _churn_changes(b: _Builder, q: Any, n: dict[str, int], max_id: dict[str, int], fraction: float,
                   filed: date | None) -> dict[str, list[list[dict[str, Any]]]]:
    """Add the new rows to ``b`` and return the updates (batches of same-shaped rows) per table. ``filed`` is the
    newest AGI period due at the previous run: people declared for it are still employed."""
    rng, today, day = b.rng, b.today, timedelta(days=1)

    def k(table: str, div: int) -> int:
        return max(1, round(n[table] * fraction / div))

    def sample(ids_from: str, count: int, sql: str) -> list[Any]:
        """Up to ``count`` rows of ``sql`` (filtered by ``:ids``) for random existing ids, deterministic."""
        ids = rng.sample(range(1, max_id[ids_from] + 1), min(max_id[ids_from], 5 * count))
        found = {r[0]: r for r in q(sql.replace(":ids", ",".join(map(str, ids)) or "NULL"))}
        return [found[i] for i in ids if i in found][:count]

    updates: dict[str, list[list[dict[str, Any]]]] = {t: [] for t in TABLES}
    latest = {r[0]: r for r in q(  # newest AGI row per person
        "SELECT a.betalningsmottagare, a.period, a.ag_id, a.spec_nr, a.kontant_011, a.skatt_001, a.formaner_012 "
        "FROM agi_iu a JOIN (SELECT betalningsmottagare m, MAX(period) p FROM agi_iu GROUP BY betalningsmottagare) x "
        "ON a.betalningsmottagare = x.m AND a.period = x.p ORDER BY a.agi_id")}
    kontos = dict(q("SELECT individ_id, MIN(konto) FROM utbetalning GROUP BY individ_id"))
    people_rows = q("SELECT individ_id, personnummer, fornamn, efternamn, kommunkod FROM individ ORDER BY individ_id")
    by_id = {r[0]: r for r in people_rows}
    last = _last_declared_period(today)

    def person(iid: int) -> _Person:
        _, pnr, fornamn, efternamn, _ = by_id[iid]
        agi = latest.get(pnr)
        p = _Person(iid, pnr, _birth(pnr), fornamn or "", efternamn or "", rng.randint(250, 600) * 1000,
                    rng.randint(29, 34) / 100, kontos.get(iid) or f"5001 {rng.randrange(10**6, 10**7)}")
        if agi and agi[4]:
            p.employed, p.income, p.tax = agi[1] >= f"{_add_months(last, -3):%Y%m}", agi[4] * 12, agi[5] / agi[4]
        return p

    # people: a few move or change name, a few are new
    upd = []
    for iid, _, _, efternamn, kommun in rng.sample(people_rows, min(len(people_rows), k("individ", 2))):
        if rng.random() < 0.7:
            kommun = rng.choice([c for c, _ in _KOMMUNER if c != kommun])
        else:
            efternamn = rng.choice([e for e in _EFTERNAMN if e != efternamn])
        upd.append({"individ_id": iid, "kommunkod": kommun, "efternamn": efternamn, "andrad": b.stamp(today)})
    updates["individ"].append(upd)
    used = {r[1] for r in people_rows}
    free = [x for x in personnummer_pool() if x not in used and x[:4] <= str(today.year - 18)]
    for i, pnr in enumerate(rng.sample(free, min(len(free), k("individ", 4)))):
        _, values = _new_person(rng, max_id["individ"] + 1 + i, pnr)
        b.add("individ", 0, {**values, "andrad": b.stamp(today)}).key = (i,)

    # new applications
    adults = [r[0] for r in people_rows if _birth(r[1]) <= _years_after(today, -18)]
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
    info = {r[0]: r for r in q(  # newest decision of each decided open case, its payments, the certified grade
        "SELECT b.arende_id, b.beslut_id, b.utfall, b.dagbelopp_sek, b.omfattning, "
        "(SELECT MAX(u.avser_tom) FROM utbetalning u JOIN beslut b2 ON b2.beslut_id = u.beslut_id "
        " WHERE b2.arende_id = b.arende_id), "
        "(SELECT COUNT(*) FROM utbetalning u JOIN beslut b2 ON b2.beslut_id = u.beslut_id "
        " WHERE b2.arende_id = b.arende_id AND u.status = 'PLANERAD' AND u.utbetald > :today), "
        "(SELECT MAX(u.utbetalning_id) FROM utbetalning u WHERE u.beslut_id = b.beslut_id) "
        "FROM beslut b JOIN arende a ON a.arende_id = b.arende_id WHERE a.status = 'BESLUTAT' "
        "ORDER BY b.beslutsdatum, b.beslut_id", today=today)}
    last_pay = {r[0]: r for r in q("SELECT utbetalning_id, brutto_sek, skatt_sek FROM utbetalning WHERE "
                                   "utbetalning_id IN (" + (",".join(str(r[7]) for r in info.values() if r[7])
                                                            or "NULL") + ")")}
    grades = dict(q("SELECT l.arende_id, MAX(l.sjukskrivningsgrad) FROM lakarintyg l JOIN arende a "
                    "ON a.arende_id = l.arende_id WHERE a.status <> 'AVSLUTAT' GROUP BY l.arende_id"))
    upd = []
    moving = min(len(open_cases), max(k("arende", 2), len(open_cases) // 2))
    for aid, iid, forman, pf, pt, status in sorted(rng.sample(open_cases, moving)):
        pf, pt, case, p = _to_date(pf), _to_date(pt), _Row((), {}, aid), person(iid)
        plan = {"pf": pf, "pt": pt, "grade": grades.get(aid) or 100}
        tax = 0.0 if forman == "BOB" else p.tax
        if status == "MOTTAGET":
            upd.append({"arende_id": aid, "status": "UTREDS", "avslutat": None, "andrad": b.stamp(today)})
        elif status == "UTREDS":
            utfall = rng.choices(("BIFALL", "DELVIS", "AVSLAG"), (92 - _AVSLAG[forman], 8, _AVSLAG[forman]))[0]
            z = pt if utfall == "BIFALL" else pf + timedelta(days=int((pt - pf).days * rng.uniform(0.4, 0.8)))
            z = _month_end(z) if forman == "BOB" else z
            dec, terms = _decision(b, p, case, forman, plan, today, utfall, None if utfall == "AVSLAG" else (pf, z))
            for a, e, natural, brutto in [] if utfall == "AVSLAG" else _schedule(forman, pf, z, terms):
                if natural <= today + 30 * day:
                    _pay(b, p, dec, max(natural, today + 2 * day), a, e, brutto, tax, "PLANERAD", today)
            upd.append({"arende_id": aid, "status": "BESLUTAT", "avslutat": None, "andrad": b.stamp(today)})
        elif aid in info:  # BESLUTAT: plan the next payment, or close when everything is paid
            _, bid, utfall, daily, omf, paid_to, pending, last_id = info[aid]
            start = _to_date(paid_to) + day if paid_to else pf
            if utfall == "BIFALL" and start <= pt:
                prev = last_pay.get(last_id)
                terms = {"daily": daily or 0, "omf": float(omf or 1), "monthly": prev[1] if prev else 1000}
                a, e, natural, brutto = _schedule(forman, start, pt, terms)[0]
                if prev and prev[1]:
                    tax = prev[2] / prev[1]
                if natural <= today + 30 * day:
                    _pay(b, p, _Row((), {}, bid), max(natural, today + day), a, e, brutto, tax, "PLANERAD", today)
            elif not pending:
                upd.append({"arende_id": aid, "status": "AVSLUTAT", "avslutat": today, "andrad": b.stamp(today)})
    updates["arende"].append(upd)

    # payments fall due; a few old ones get an amount correction
    due = q("SELECT utbetalning_id FROM utbetalning WHERE status = 'PLANERAD' AND utbetald <= :today "
            "ORDER BY utbetalning_id", today=today)
    updates["utbetalning"].append([{"utbetalning_id": r[0], "status": "UTBETALD", "andrad": b.stamp(today)}
                                   for r in due])
    upd = []
    for uid, brutto, skatt, forman in sample("utbetalning", k("utbetalning", 10), (
            "SELECT u.utbetalning_id, u.brutto_sek, u.skatt_sek, a.forman FROM utbetalning u JOIN beslut b "
            "ON b.beslut_id = u.beslut_id JOIN arende a ON a.arende_id = b.arende_id "
            "WHERE u.status = 'UTBETALD' AND u.brutto_sek > 0 AND u.utbetalning_id IN (:ids)")):
        if forman == "BOB":
            new, tax_new = max(100, brutto + rng.choice((-200, -100, 100, 200))), 0
        else:
            new = max(1, round(brutto * rng.uniform(0.95, 1.05)))
            new, tax_new = (new + 1 if new == brutto else new), round(new * (skatt or 0) / brutto)
        upd.append({"utbetalning_id": uid, "brutto_sek": new, "skatt_sek": tax_new, "netto_sek": new - tax_new,
                    "andrad": b.stamp(today)})
    updates["utbetalning"].append(upd)

    # employers file the periods up to the newest due one; a few earlier declarations are corrected
    leave = q("SELECT i.personnummer, a.forman, a.period_from, a.period_tom FROM arende a JOIN individ i "
              "ON i.individ_id = a.individ_id WHERE a.forman IN ('FP', 'TFP') AND a.period_tom >= :since",
              since=_add_months(last, -24))
    leave_of: dict[str, list[tuple[str, date, date]]] = {}
    for pnr, forman, a, z in leave:
        leave_of.setdefault(pnr, []).append((forman, _to_date(a), _to_date(z)))
    for pnr, period, ag_id, spec, kontant, skatt, formaner in latest.values():
        m = _add_months(date(int(period[:4]), int(period[4:]), 1), 1)
        if filed is None or period != f"{filed:%Y%m}" or not kontant:
            continue  # employment ended, or already filed
        p = _Person(0, pnr, _birth(pnr), "", "", kontant * 12, skatt / kontant, "", leave=leave_of.get(pnr, []))
        p.income = int(kontant * 12 * 1.03 ** (b.as_of.year - m.year))  # _agi_row scales back by year
        while m <= last:
            _agi_row(b, p, ag_id, spec, formaner, m, today)
            m = _add_months(m, 1)
    upd = []
    for agi_id, kontant, skatt in sample("agi_iu", k("agi_iu", 20),
                                         "SELECT agi_id, kontant_011, skatt_001 FROM agi_iu "
                                         "WHERE kontant_011 > 0 AND agi_id IN (:ids)"):
        new = round(kontant * rng.uniform(0.9, 1.1)) + 1
        upd.append({"agi_id": agi_id, "kontant_011": new, "skatt_001": round(new * (skatt or 0) / kontant),
                    "andrad": b.stamp(today)})
    updates["agi_iu"].append(upd)
    return updates
