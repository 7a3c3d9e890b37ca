"""The demo hot store: schema, seed and churn on SQLite and PostgreSQL.

PostgreSQL tests run in a throw-away schema ``demo_<random>`` of the ``test`` database (override the server with
DATAZONES_TEST_PG_URL); they skip when the server is not reachable.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lifecycle.demo import COLUMNS, EXCLUDED_DATES, TABLES, churn, create_schema, personnummer_pool, seed
from zones.errors import TerminalError
from zones.personnummer import find_personnummer, is_valid

TEST_LIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "skatteverket-testpersonnummer.txt"
PG_URL = os.environ.get("DATAZONES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AS_OF = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)]


@pytest.fixture(scope="session")
def skatteverket_numbers() -> frozenset[str]:
    return frozenset(TEST_LIST.read_text(encoding="utf-8").split())


def _sqlite_engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    sa.event.listen(engine, "connect", lambda dbapi_conn, _: dbapi_conn.execute("PRAGMA foreign_keys=ON"))
    return engine


def _make_engine(dialect: str, tmp: Path) -> Iterator[sa.Engine]:
    if dialect == "sqlite":
        engine = _sqlite_engine(tmp / "hot.db")
        yield engine
        engine.dispose()
        return
    admin = sa.create_engine(PG_URL)
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL must run at {PG_URL} (pg_ctlcluster ... main start): {exc}")
    schema = f"demo_{secrets.token_hex(6)}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = sa.create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=DIALECTS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    yield from _make_engine(request.param, tmp_path)


@pytest.fixture(scope="module", params=DIALECTS)
def seeded(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sa.Engine, dict[str, int], float]]:
    """One seeded store per dialect for the read-only tests (scale 1, seed 42, AS_OF)."""
    for engine in _make_engine(request.param, tmp_path_factory.mktemp("seeded")):
        create_schema(engine)
        started = time.perf_counter()
        counts = seed(engine, scale=1, as_of=AS_OF, seed=42)
        yield engine, counts, time.perf_counter() - started


# ------------------------------------------------------------------------------------------------ SQL helpers
def _plus_days(engine: sa.Engine, expr: str, n: int) -> str:
    return f"({expr} + {n})" if engine.dialect.name == "postgresql" else f"date({expr}, '{n:+d} days')"


def _days_between(engine: sa.Engine, a: str, b: str) -> str:
    if engine.dialect.name == "postgresql":
        return f"({b} - {a})"
    return f"CAST(julianday({b}) - julianday({a}) AS INTEGER)"


def _andrad_date(engine: sa.Engine, alias: str = "") -> str:
    col = f"{alias}andrad"
    return f"(({col} AT TIME ZONE 'UTC')::date)" if engine.dialect.name == "postgresql" else f"substr({col}, 1, 10)"


def _yyyymm(engine: sa.Engine, expr: str) -> str:
    if engine.dialect.name == "postgresql":
        return f"to_char({expr}, 'YYYYMM')"
    return f"replace(substr({expr}, 1, 7), '-', '')"


def _param(engine: sa.Engine, v: Any) -> Any:
    if engine.dialect.name == "postgresql":
        return v
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return v.isoformat() if isinstance(v, date) else v


def _scalar(engine: sa.Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), {k: _param(engine, v) for k, v in params.items()}).scalar()


def _rows(engine: sa.Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), {k: _param(engine, v) for k, v in params.items()}).all())


PAY = ("utbetalning u JOIN beslut b ON b.beslut_id = u.beslut_id JOIN arende a ON a.arende_id = b.arende_id")

# Each check counts violations; every one must be 0. Functions of the engine build dialect-specific SQL.
RULES: dict[str, Callable[[sa.Engine], str]] = {
    "fk_arende_individ": lambda e: "SELECT COUNT(*) FROM arende a LEFT JOIN individ i ON i.individ_id = a.individ_id "
                                   "WHERE i.individ_id IS NULL",
    "fk_beslut_arende": lambda e: "SELECT COUNT(*) FROM beslut b LEFT JOIN arende a ON a.arende_id = b.arende_id "
                                  "WHERE a.arende_id IS NULL",
    "fk_utbetalning_beslut": lambda e: "SELECT COUNT(*) FROM utbetalning u LEFT JOIN beslut b "
                                       "ON b.beslut_id = u.beslut_id WHERE b.beslut_id IS NULL",
    "fk_utbetalning_individ": lambda e: "SELECT COUNT(*) FROM utbetalning u LEFT JOIN individ i "
                                        "ON i.individ_id = u.individ_id WHERE i.individ_id IS NULL",
    "fk_lakarintyg_arende": lambda e: "SELECT COUNT(*) FROM lakarintyg l LEFT JOIN arende a "
                                      "ON a.arende_id = l.arende_id WHERE a.arende_id IS NULL",
    "agi_person_known": lambda e: "SELECT COUNT(*) FROM agi_iu g LEFT JOIN individ i "
                                  "ON i.personnummer = g.betalningsmottagare WHERE i.individ_id IS NULL",
    "payment_person_is_case_person": lambda e: f"SELECT COUNT(*) FROM {PAY} WHERE u.individ_id <> a.individ_id",
    "netto_is_brutto_minus_skatt": lambda e: "SELECT COUNT(*) FROM utbetalning "
                                             "WHERE netto_sek <> brutto_sek - skatt_sek OR netto_sek IS NULL",
    "omfattning_in_set": lambda e: "SELECT COUNT(*) FROM beslut WHERE omfattning IS NOT NULL "
                                   "AND omfattning NOT IN (1, 0.75, 0.5, 0.25, 0.125)",
    "omfattning_set_for_day_benefits": lambda e: "SELECT COUNT(*) FROM beslut b JOIN arende a "
        "ON a.arende_id = b.arende_id WHERE a.forman <> 'BOB' AND b.utfall <> 'AVSLAG' AND b.omfattning IS NULL",
    "bostadsbidrag_multiple_of_100_tax_free": lambda e: f"SELECT COUNT(*) FROM {PAY} WHERE a.forman = 'BOB' "
                                                        "AND (u.brutto_sek % 100 <> 0 OR u.skatt_sek <> 0)",
    "sjukpenning_from_day_15": lambda e: "SELECT COUNT(*) FROM arende a WHERE a.forman = 'SJP' AND a.period_from < "
        f"(SELECT {_plus_days(e, 'MIN(l.giltig_from)', 14)} FROM lakarintyg l WHERE l.arende_id = a.arende_id)",
    "certificate_for_sick_periods": lambda e: "SELECT COUNT(*) FROM arende a WHERE a.forman = 'SJP' AND NOT EXISTS "
                                              "(SELECT 1 FROM lakarintyg l WHERE l.arende_id = a.arende_id)",
    "certificates_cover_period": lambda e: "SELECT COUNT(*) FROM arende a WHERE a.forman = 'SJP' AND a.period_tom > "
        "(SELECT MAX(l.giltig_tom) FROM lakarintyg l WHERE l.arende_id = a.arende_id)",
    "certificates_without_gaps": lambda e: "SELECT COUNT(*) FROM (SELECT l.arende_id, "
        f"SUM({_days_between(e, 'l.giltig_from', 'l.giltig_tom')} + 1) AS covered, "
        f"{_days_between(e, 'MIN(l.giltig_from)', 'MAX(l.giltig_tom)')} + 1 AS span "
        "FROM lakarintyg l GROUP BY l.arende_id) x WHERE covered <> span",
    "sjukpenning_at_most_364_days": lambda e: "SELECT COUNT(*) FROM arende WHERE forman = 'SJP' AND "
        f"{_days_between(e, 'period_from', 'period_tom')} + 1 > 364",
    "sjukpenning_grade_matches_certificate": lambda e: "SELECT COUNT(*) FROM beslut b JOIN lakarintyg l "
        "ON l.arende_id = b.arende_id WHERE b.omfattning * 100 <> l.sjukskrivningsgrad",
    "dagbelopp_at_most_80_percent_of_sgi": lambda e: "SELECT COUNT(*) FROM beslut "
        "WHERE sgi_sek IS NOT NULL AND (dagbelopp_sek > sgi_sek * 0.8 / 365 + 1 OR sgi_sek > 588000)",
    "payments_within_case_period": lambda e: f"SELECT COUNT(*) FROM {PAY} WHERE u.avser_from < a.period_from "
                                             "OR u.avser_tom > a.period_tom OR u.avser_from > u.avser_tom",
    "paid_after_decision": lambda e: f"SELECT COUNT(*) FROM {PAY} WHERE u.utbetald < b.beslutsdatum",
    "no_payments_on_avslag": lambda e: f"SELECT COUNT(*) FROM {PAY} WHERE b.utfall = 'AVSLAG'",
    "closed_cases_have_nothing_planned": lambda e: f"SELECT COUNT(*) FROM {PAY} WHERE a.status = 'AVSLUTAT' "
                                                   "AND u.status = 'PLANERAD'",
    "avslutat_iff_status_avslutat": lambda e: "SELECT COUNT(*) FROM arende WHERE (status = 'AVSLUTAT' "
        "AND avslutat IS NULL) OR (status <> 'AVSLUTAT' AND avslutat IS NOT NULL) OR avslutat < inkommit",
    "decided_cases_have_decisions": lambda e: "SELECT COUNT(*) FROM arende a WHERE a.status IN ('BESLUTAT', "
        "'AVSLUTAT') AND NOT EXISTS (SELECT 1 FROM beslut b WHERE b.arende_id = a.arende_id)",
    "open_cases_have_no_decisions": lambda e: "SELECT COUNT(*) FROM arende a WHERE a.status IN ('MOTTAGET', "
        "'UTREDS') AND EXISTS (SELECT 1 FROM beslut b WHERE b.arende_id = a.arende_id)",
    "decision_dates_in_case": lambda e: "SELECT COUNT(*) FROM beslut b JOIN arende a ON a.arende_id = b.arende_id "
                                        "WHERE b.beslutsdatum < a.inkommit OR b.beslutsdatum > a.avslutat",
    "agi_periods_from_201807": lambda e: "SELECT COUNT(*) FROM agi_iu WHERE period < '201807' OR period > '209912'",
    "agi_franvaro_only_from_202501": lambda e: "SELECT COUNT(*) FROM agi_iu WHERE (period < '202501' AND "
        "(franvaro_datum IS NOT NULL OR franvaro_typ IS NOT NULL)) "
        "OR ((franvaro_datum IS NULL) <> (franvaro_typ IS NULL))",
    "agi_franvaro_in_period": lambda e: "SELECT COUNT(*) FROM agi_iu WHERE franvaro_datum IS NOT NULL "
                                        f"AND {_yyyymm(e, 'franvaro_datum')} <> period",
    "enums": lambda e: "SELECT (SELECT COUNT(*) FROM arende WHERE forman NOT IN ('SJP','FP','TFP','AKS','BOB') "
        "OR kanal NOT IN ('E_TJANST','BLANKETT','TELEFON') OR status NOT IN ('MOTTAGET','UTREDS','BESLUTAT',"
        "'AVSLUTAT')) + (SELECT COUNT(*) FROM beslut WHERE utfall NOT IN ('BIFALL','DELVIS','AVSLAG','INDRAGNING',"
        "'ATERKRAV')) + (SELECT COUNT(*) FROM utbetalning WHERE status NOT IN ('PLANERAD','UTBETALD','ATERKRAVD',"
        "'MAKULERAD')) + (SELECT COUNT(*) FROM lakarintyg WHERE sjukskrivningsgrad NOT IN (100, 75, 50, 25)) "
        "+ (SELECT COUNT(*) FROM individ WHERE id_typ NOT IN ('PNR','SAMNR') OR kon NOT IN ('K','M')) "
        "+ (SELECT COUNT(*) FROM agi_iu WHERE franvaro_typ NOT IN ('TILLFALLIG_FORALDRAPENNING','FORALDRAPENNING'))",
    "andrad_not_before_business_dates": lambda e: (
        f"SELECT (SELECT COUNT(*) FROM arende WHERE {_andrad_date(e)} < inkommit OR {_andrad_date(e)} < avslutat) "
        f"+ (SELECT COUNT(*) FROM beslut WHERE {_andrad_date(e)} < beslutsdatum) "
        f"+ (SELECT COUNT(*) FROM utbetalning WHERE status IN ('UTBETALD', 'ATERKRAVD') "
        f"AND {_andrad_date(e)} < utbetald) "
        f"+ (SELECT COUNT(*) FROM lakarintyg WHERE {_andrad_date(e)} < utfardat) "
        f"+ (SELECT COUNT(*) FROM agi_iu WHERE {_yyyymm(e, _andrad_date(e))} <= period)"),
}


def _violations(engine: sa.Engine) -> dict[str, int]:
    return {name: int(_scalar(engine, sql(engine))) for name, sql in RULES.items()}


def _payment_status_vs_today(engine: sa.Engine, today: date) -> int:
    return int(_scalar(engine, "SELECT COUNT(*) FROM utbetalning WHERE (status = 'PLANERAD' AND utbetald <= :d) "
                               "OR (status IN ('UTBETALD', 'ATERKRAVD') AND utbetald > :d)", d=today))


def _weekdays(a: date, b: date) -> int:
    return sum(1 for i in range((b - a).days + 1) if (a + timedelta(days=i)).weekday() < 5)


def _aktivitetsstod_violations(engine: sa.Engine) -> list[Any]:
    """Aktivitetsstöd is paid per programme day, at most 5 a week (corrections move an amount by <= 5 %)."""
    rows = _rows(engine, f"SELECT u.avser_from, u.avser_tom, u.brutto_sek, b.dagbelopp_sek, b.omfattning, "
                         f"b.antal_dagar, a.period_from, a.period_tom FROM {PAY} WHERE a.forman = 'AKS'")
    bad = []
    for a, z, brutto, daily, omf, days, pf, pt in rows:
        a, z, pf, pt = (date.fromisoformat(str(v)) for v in (a, z, pf, pt))
        if brutto > daily * float(omf) * _weekdays(a, z) * 1.05 + 1 or (days or 0) > _weekdays(pf, pt):
            bad.append((a, z, brutto, daily, omf, days))
    return bad


def _dump(engine: sa.Engine) -> dict[str, list[tuple[str, ...]]]:
    """Every row as text in one form for both dialects (dates ISO, andrad UTC with 6 fraction digits)."""
    def norm(v: Any) -> str:
        if isinstance(v, datetime):
            return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(v, date):
            return v.isoformat()
        if isinstance(v, bool | int | float | Decimal):  # SQLite keeps NUMERIC 1.0 as integer 1
            return str(int(v)) if float(v).is_integer() else repr(float(v))
        return v if isinstance(v, str) else repr(v)
    return {t: [tuple(map(norm, r)) for r in _rows(engine, f"SELECT * FROM {t} ORDER BY {COLUMNS[t][0]}")]
            for t in TABLES}


# ------------------------------------------------------------------------------------------------ tests
def test_row_counts_at_scale_1(seeded: tuple[sa.Engine, dict[str, int], float]) -> None:
    engine, counts, _ = seeded
    for t in TABLES:
        assert _scalar(engine, f"SELECT COUNT(*) FROM {t}") == counts[t]
    assert counts["individ"] == 1000
    assert 2500 <= counts["arende"] <= 5000
    assert counts["beslut"] >= 0.9 * counts["arende"]
    assert 8000 <= counts["utbetalning"] <= 25000
    assert counts["lakarintyg"] >= _scalar(engine, "SELECT COUNT(*) FROM arende WHERE forman = 'SJP'")
    assert 10000 <= counts["agi_iu"] <= 25000
    assert 20000 <= sum(counts.values()) <= 60000


@pytest.mark.parametrize("rule", sorted(RULES))
def test_benefit_rules_and_integrity_hold(seeded: tuple[sa.Engine, dict[str, int], float], rule: str) -> None:
    engine, _, _ = seeded
    assert _scalar(engine, RULES[rule](engine)) == 0


def test_rules_can_fail(engine: sa.Engine) -> None:
    """No CHECK constraints: bad rows can be stored, and the checks above see them."""
    create_schema(engine)
    seed(engine, as_of=AS_OF, seed=3)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE utbetalning SET netto_sek = netto_sek + 1 WHERE utbetalning_id = 1"))
        conn.execute(sa.text("UPDATE beslut SET omfattning = 0.3 WHERE beslut_id = 1"))
        conn.execute(sa.text("UPDATE agi_iu SET franvaro_typ = 'FORALDRAPENNING', franvaro_datum = :d "
                             "WHERE agi_id = 1"), {"d": _param(engine, date(2019, 1, 1))})
    bad = _violations(engine)
    assert bad["netto_is_brutto_minus_skatt"] == 1
    assert bad["omfattning_in_set"] == 1
    assert bad["agi_franvaro_only_from_202501"] == 1


def test_every_personnummer_is_a_skatteverket_test_number(seeded: tuple[sa.Engine, dict[str, int], float],
                                                          skatteverket_numbers: frozenset[str]) -> None:
    engine, _, _ = seeded
    people = _rows(engine, "SELECT personnummer, id_typ, kon, fodelsear FROM individ")
    emitted = {r[0] for r in people} | {r[0] for r in _rows(engine, "SELECT betalningsmottagare FROM agi_iu")}
    assert emitted <= skatteverket_numbers, sorted(emitted - skatteverket_numbers)[:5]
    assert len({r[0] for r in people}) == len(people)  # no person twice
    for pnr, id_typ, kon, fodelsear in people:
        assert is_valid(pnr) and id_typ == "PNR" and fodelsear == int(pnr[:4])
        assert kon == ("K" if int(pnr[10]) % 2 == 0 else "M")  # birth number: even = woman
    employers = {r[0] for r in _rows(engine, "SELECT DISTINCT ag_id FROM agi_iu")}
    assert employers and not any(is_valid(a) for a in employers)  # organisation numbers, never personnummer
    # nothing else looks like a personnummer to the leak scanner: accounts, employers, free text
    others = [r[0] for r in _rows(engine, "SELECT DISTINCT konto FROM utbetalning")] + sorted(employers)
    others += [r[0] for r in _rows(engine, "SELECT motivering FROM beslut UNION ALL "
                                           "SELECT funktionsnedsattning FROM lakarintyg")]
    assert find_personnummer(" | ".join(others)) == []


def test_the_whole_number_pool_is_on_the_list(skatteverket_numbers: frozenset[str]) -> None:
    pool = personnummer_pool()
    assert len(pool) == len(set(pool)) == 2 * ((date(2013, 12, 31) - date(1976, 1, 1)).days + 1 - len(EXCLUDED_DATES))
    assert set(pool) <= skatteverket_numbers
    assert {p[8:11] for p in pool} == {"238", "239"}
    missing_dates = {date(int(n[:4]), int(n[4:6]), int(n[6:8])) for n in skatteverket_numbers
                     if "1976" <= n[:4] <= "2013" and n[8:11] in ("238", "239")}
    all_days = {date(1976, 1, 1) + timedelta(days=i) for i in range((date(2013, 12, 31) - date(1976, 1, 1)).days + 1)}
    # every excluded date really lacks 238 or 239 on the list (so the exclusion list is not too generous)
    for d in EXCLUDED_DATES:
        ymd = d.strftime("%Y%m%d")
        assert sum(1 for n in skatteverket_numbers if n.startswith(ymd) and n[8:11] in ("238", "239")) < 2
    assert all_days - missing_dates <= EXCLUDED_DATES


def test_data_spans_twelve_years_and_retention_has_work(seeded: tuple[sa.Engine, dict[str, int], float]) -> None:
    engine, _, _ = seeded
    today = AS_OF.date()
    twelve_years_ago = today.replace(year=today.year - 12)
    assert date.fromisoformat(str(_scalar(engine, "SELECT MIN(inkommit) FROM arende"))) <= twelve_years_ago
    assert date.fromisoformat(str(_scalar(engine, "SELECT MIN(utbetald) FROM utbetalning"))) <= twelve_years_ago
    old = _scalar(engine, "SELECT COUNT(*) FROM utbetalning WHERE utbetald < :d", d=today - timedelta(days=3653))
    recent = _scalar(engine, "SELECT COUNT(*) FROM utbetalning WHERE utbetald >= :d", d=today - timedelta(days=395))
    assert old > 100 and recent > 100  # 10-year and 13-month rules both have rows on each side
    assert _scalar(engine, "SELECT MIN(period) FROM agi_iu") == "201807"
    assert _scalar(engine, "SELECT COUNT(*) FROM agi_iu WHERE period < '202306'") > 1000  # past P24M
    assert _scalar(engine, "SELECT COUNT(*) FROM agi_iu WHERE franvaro_datum IS NOT NULL") > 0
    assert _scalar(engine, "SELECT COUNT(*) FROM beslut WHERE motivering LIKE '% har %' OR motivering LIKE "
                           "'%samtal med%' OR motivering LIKE '%Uppgifter om%'") > 0
    statuses = {r[0] for r in _rows(engine, "SELECT DISTINCT status FROM arende")}
    assert statuses == {"MOTTAGET", "UTREDS", "BESLUTAT", "AVSLUTAT"}
    assert {r[0] for r in _rows(engine, "SELECT DISTINCT status FROM utbetalning")} == {
        "PLANERAD", "UTBETALD", "ATERKRAVD", "MAKULERAD"}


def test_names_leak_into_free_text(seeded: tuple[sa.Engine, dict[str, int], float]) -> None:
    engine, _, _ = seeded
    leaks = _scalar(engine, "SELECT COUNT(*) FROM beslut b JOIN arende a ON a.arende_id = b.arende_id JOIN individ i "
                            "ON i.individ_id = a.individ_id WHERE b.motivering LIKE '%' || i.fornamn || ' ' || "
                            "i.efternamn || '%'")
    assert 0.05 * _scalar(engine, "SELECT COUNT(*) FROM beslut") < leaks < 0.3 * _scalar(
        engine, "SELECT COUNT(*) FROM beslut")


def test_payment_status_and_aktivitetsstod(seeded: tuple[sa.Engine, dict[str, int], float]) -> None:
    engine, _, _ = seeded
    assert _payment_status_vs_today(engine, AS_OF.date()) == 0
    assert _aktivitetsstod_violations(engine) == []


def test_andrad_is_a_watermark(seeded: tuple[sa.Engine, dict[str, int], float]) -> None:
    engine, _, _ = seeded
    insp = sa.inspect(engine)
    for t in TABLES:
        assert _scalar(engine, f"SELECT COUNT(*) FROM {t} WHERE andrad > :a OR andrad IS NULL", a=AS_OF) == 0
        assert any(ix["column_names"] == ["andrad", COLUMNS[t][0]] for ix in insp.get_indexes(t)), t
        assert [c["name"] for c in insp.get_columns(t)] == list(COLUMNS[t])
    if engine.dialect.name == "sqlite":  # TEXT 'YYYY-MM-DD HH:MM:SS.ffffff' so text order is time order
        pattern = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
        for t in TABLES:
            for (v,) in _rows(engine, f"SELECT andrad FROM {t} LIMIT 500"):
                assert isinstance(v, str) and pattern.fullmatch(v), v
        assert _scalar(engine, "SELECT COUNT(*) FROM arende WHERE typeof(inkommit) <> 'text' "
                               "OR length(inkommit) <> 10") == 0
    else:
        assert _scalar(engine, "SELECT data_type FROM information_schema.columns WHERE table_name = 'arende' "
                               "AND column_name = 'andrad' AND table_schema = current_schema()") == \
            "timestamp with time zone"


def test_seed_refuses_a_non_empty_store_and_schema_is_idempotent(engine: sa.Engine) -> None:
    create_schema(engine)
    create_schema(engine)
    seed(engine, as_of=AS_OF, seed=1)
    create_schema(engine)  # again, with data: nothing changes
    with pytest.raises(TerminalError, match="already has rows"):
        seed(engine, as_of=AS_OF, seed=1)
    with pytest.raises(ValueError):
        seed(engine, scale=0)


def test_same_seed_same_data_on_both_dialects(engine: sa.Engine, tmp_path: Path) -> None:
    create_schema(engine)
    seed(engine, as_of=AS_OF, seed=7)
    reference = _sqlite_engine(tmp_path / "reference.db")
    create_schema(reference)
    seed(reference, as_of=AS_OF, seed=7)
    assert _dump(engine) == _dump(reference)
    other = _sqlite_engine(tmp_path / "other.db")
    create_schema(other)
    seed(other, as_of=AS_OF, seed=8)
    assert _dump(other)["individ"] != _dump(reference)["individ"]
    # churn is deterministic too
    later = AS_OF + timedelta(days=1)
    assert churn(engine, as_of=later, seed=5) == churn(reference, as_of=later, seed=5)
    assert _dump(engine) == _dump(reference)


def test_churn_changes_rows_and_moves_andrad(engine: sa.Engine) -> None:
    create_schema(engine)
    seed(engine, as_of=AS_OF, seed=42)
    as_of = AS_OF
    closed = _scalar(engine, "SELECT COUNT(*) FROM arende WHERE status = 'AVSLUTAT'")
    for days in (1, 2, 30):  # the third run crosses the 12th: employers file a new AGI period
        before = {t: _scalar(engine, f"SELECT MAX(andrad) FROM {t}") for t in TABLES}
        newest = max(before.values(), key=str)
        max_ids = {t: _scalar(engine, f"SELECT MAX({COLUMNS[t][0]}) FROM {t}") for t in TABLES}
        as_of = AS_OF + timedelta(days=days)
        changed = churn(engine, as_of=as_of, seed=11)
        for t in TABLES:
            assert changed[t] > 0, (t, changed)
            # every changed or new row, and only those, is after the old watermark
            assert _scalar(engine, f"SELECT COUNT(*) FROM {t} WHERE andrad > :w", w=newest) == changed[t], t
            assert _scalar(engine, f"SELECT COUNT(*) FROM {t} WHERE andrad > :a", a=as_of) == 0
            assert _scalar(engine, f"SELECT MIN({COLUMNS[t][0]}) FROM {t} WHERE andrad > :w AND "
                                   f"{COLUMNS[t][0]} > :m", w=newest, m=max_ids[t]) in (None, max_ids[t] + 1)
        assert _violations(engine) == dict.fromkeys(RULES, 0)
        assert _payment_status_vs_today(engine, as_of.date()) == 0
        assert _aktivitetsstod_violations(engine) == []
    assert _scalar(engine, "SELECT COUNT(*) FROM arende WHERE status = 'AVSLUTAT'") > closed  # cases close
    corrected_old = _scalar(engine, "SELECT COUNT(*) FROM utbetalning WHERE andrad > :w AND status = 'UTBETALD' "
                                    "AND utbetald < :d", w=AS_OF, d=AS_OF.date() - timedelta(days=395))
    assert corrected_old > 0  # old rows (past hot retention) get corrections too
    assert _scalar(engine, "SELECT COUNT(*) FROM agi_iu WHERE period = '202506'") > 100
    with pytest.raises(ValueError, match="not after the newest andrad"):
        churn(engine, as_of=as_of - timedelta(hours=1), seed=1)
