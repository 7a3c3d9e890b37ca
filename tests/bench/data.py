"""Bench data in PostgreSQL: an ``utbetalning``-shaped table per size, built once and kept between runs.

Every value is a pure function of the row id ``i`` (and of ``utbetald`` for ``andrad``), so the incremental case's
churn can be undone exactly — and idempotently, even after a crash — by recomputing the formulas: the churned rows are
the ones with ``andrad >= 2026-01-01`` (the built data ends before) or ``utbetalning_id > n`` (the inserted ones).
"""

from __future__ import annotations

import time

import psycopg

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
SCHEMA = "bench"
CHURN_AT = "2026-06-01T12:00:00+00"
COLUMNS = [("utbetalning_id", "bigint"), ("beslut_id", "bigint"), ("individ_id", "bigint"),
           ("utbetald", "date"), ("avser_from", "date"), ("avser_tom", "date"), ("brutto_sek", "integer"),
           ("skatt_sek", "integer"), ("netto_sek", "integer"), ("konto", "character varying"),
           ("status", "character varying"), ("andrad", "timestamp with time zone")]
DDL = """CREATE TABLE {t} (
  utbetalning_id BIGINT PRIMARY KEY, beslut_id BIGINT, individ_id BIGINT, utbetald DATE NOT NULL,
  avser_from DATE, avser_tom DATE, brutto_sek INTEGER, skatt_sek INTEGER, netto_sek INTEGER,
  konto VARCHAR(20), status VARCHAR(12), andrad TIMESTAMPTZ NOT NULL)"""

# 2013-01-01 .. 2025-12-31 is 4748 days: utbetald rises with the id, like an insert-ordered table.
_UTBETALD = "(date '2013-01-01' + ((i - 1) * 4748 / {n})::int)"
# andrad: the payment day plus 06:00..18:59 (always before 2026-01-01).
_ANDRAD = "((d + make_interval(hours => 6 + (i % 13)::int, mins => ((i * 7) % 60)::int)) AT TIME ZONE 'UTC')"
# a 4-digit clearing number (3000..9998) and 8..12 account digits: 12..16 digits in all.
_KONTO = ("((3000 + (i * 31) % 6999)::text || "
          "left(lpad(((i * 982451653 + 12345) % 1000000000000)::text, 12, '0'), 8 + (i % 5)::int))")
# the newest 2 % are planned payments; the churn flips the newest half-percent to UTBETALD.
_STATUS = ("(CASE WHEN i > {n} - {n} / 50 THEN 'PLANERAD' WHEN i % 97 = 0 THEN 'ATERKRAVD' "
           "WHEN i % 89 = 0 THEN 'MAKULERAD' ELSE 'UTBETALD' END)")
_SELECT = """SELECT i, 1 + (i - 1) / 6, 1 + (i * 48271) % 1500000, d,
  date_trunc('month', d - 20)::date, (date_trunc('month', d - 20) + interval '1 month - 1 day')::date,
  b, b * (20 + (i % 16)::int) / 100, b - b * (20 + (i % 16)::int) / 100,
  {konto},
  {status}, {andrad}
FROM (SELECT i, {utbetald} AS d, (500 + (i * 7919) % 39500)::int AS b
      FROM generate_series({lo}::bigint, {hi}::bigint) AS i) s"""


def table_name(rows: int) -> str:
    return f"utbetalning_{rows}"


def qualified(rows: int) -> str:
    return f"{SCHEMA}.{table_name(rows)}"


def connect() -> psycopg.Connection:
    return psycopg.connect(DSN, autocommit=True)


def _exists(cur: psycopg.Cursor, rows: int) -> bool:
    cur.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s ORDER BY ordinal_position", (SCHEMA, table_name(rows)))
    return [(str(a), str(b)) for a, b in cur.fetchall()] == COLUMNS


def revert_churn(cur: psycopg.Cursor, rows: int) -> int:
    """Undo the incremental case's changes (idempotent); returns how many rows it touched."""
    t, n = qualified(rows), rows
    cur.execute(f"DELETE FROM {t} WHERE utbetalning_id > {n}")
    deleted = cur.rowcount
    cur.execute(f"UPDATE {t} AS u SET status = {_STATUS.format(n=n)}, andrad = {_ANDRAD} "
                f"FROM (SELECT utbetalning_id AS i, utbetald AS d FROM {t} WHERE andrad >= '2026-01-01') s "
                "WHERE u.utbetalning_id = s.i")
    return deleted + cur.rowcount


def ensure_table(rows: int, log: list[str]) -> float:
    """Create ``bench.utbetalning_<rows>`` unless it exists with the right shape and row count. Returns seconds."""
    t0 = time.perf_counter()
    t = qualified(rows)
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        if _exists(cur, rows):
            touched = revert_churn(cur, rows)
            if touched:
                log.append(f"{t}: reverted {touched:,} rows left by an interrupted incremental case")
            cur.execute(f"SELECT count(*) FROM {t}")
            row = cur.fetchone()
            if row and row[0] == rows:
                log.append(f"{t}: kept ({rows:,} rows)")
                return time.perf_counter() - t0
            log.append(f"{t}: has {row[0] if row else '?':,} rows, want {rows:,}: rebuilding")
        cur.execute(f"DROP TABLE IF EXISTS {t}")
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute(DDL.format(t=t).replace(" PRIMARY KEY", ""))  # the key after the load is much faster
        sel = _SELECT.format(status=_STATUS.format(n=rows), andrad=_ANDRAD, konto=_KONTO,
                             utbetald=_UTBETALD.format(n=rows), lo=1, hi=rows)
        cur.execute(f"INSERT INTO {t} {sel}")
        cur.execute(f"ALTER TABLE {t} ADD PRIMARY KEY (utbetalning_id)")
        cur.execute(f"CREATE INDEX ON {t} (andrad, utbetalning_id)")
        cur.execute(f"VACUUM (ANALYZE) {t}")
    secs = time.perf_counter() - t0
    log.append(f"{t}: built {rows:,} rows in {secs:.1f} s")
    return secs


def apply_churn(rows: int) -> tuple[int, int]:
    """1 % realistic churn, all at ``andrad = CHURN_AT``: half status flips on the newest planned payments
    (PLANERAD → UTBETALD), half new payments with new ids and recent dates. One transaction."""
    t, n = qualified(rows), rows
    k = n // 100
    upd, ins = k // 2, k - k // 2
    new = (f"SELECT i, 1 + (i - 1) / 6, 1 + (i * 48271) % 1500000, d, date_trunc('month', d)::date, d, b, "
           f"b * 30 / 100, b - b * 30 / 100, {_KONTO}, 'PLANERAD', timestamptz '{CHURN_AT}' "
           f"FROM (SELECT i, date '2026-05-01' + ((i % 31)::int) AS d, (500 + (i * 7919) % 39500)::int AS b "
           f"FROM generate_series({n + 1}::bigint, {n + ins}::bigint) AS i) s")
    with psycopg.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute(f"UPDATE {t} SET status = 'UTBETALD', andrad = timestamptz '{CHURN_AT}' "
                    f"WHERE utbetalning_id > {n - upd} AND status = 'PLANERAD'")
        updated = cur.rowcount
        cur.execute(f"INSERT INTO {t} {new}")
        inserted = cur.rowcount
    return updated, inserted


def undo_churn(rows: int) -> int:
    with connect() as conn, conn.cursor() as cur:
        return revert_churn(cur, rows)
