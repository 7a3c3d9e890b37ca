"""The hot zone: an operational store declared by a SQLAlchemy URL, reflected to Arrow, read in keyset pages.

SQLAlchemy stays the way the store is declared, reflected and reached. Rows are read in **keyset pages**
(``WHERE (pk) > (:last) ... ORDER BY pk LIMIT n``) so memory does not grow with table size and a crashed full load
resumes at its last committed page. On PostgreSQL pages are fetched with ADBC, which speaks the binary COPY protocol
and hands Arrow buffers over without Python objects (row-at-a-time fetching is 6–9× slower); on SQLite (the embedded
default) rows come through sqlite3 and are converted column-wise. All identifiers are validated by the model and
quoted by SQLAlchemy's dialect: a name from config can neither inject SQL nor escape a path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from zones.errors import ConfigError

RAW_COLUMN = "_dz_raw"  # set on rows whose values could not be read as their declared type


def make_engine(url: str) -> sa.Engine:
    kw: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kw["connect_args"] = {"timeout": 60}
    return sa.create_engine(url, **kw)


def clock(engine: sa.Engine) -> datetime:
    """The hot store's current time (UTC): the clock its watermarks come from."""
    with engine.connect() as c:
        v = c.execute(sa.select(sa.func.current_timestamp())).scalar()
    if isinstance(v, str):  # SQLite: 'YYYY-MM-DD HH:MM:SS' in UTC
        v = datetime.fromisoformat(v)
    assert isinstance(v, datetime)
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def arrow_type(t: sa.types.TypeEngine[Any]) -> pa.DataType:
    """Map a reflected SQL type to the Arrow type warm stores."""
    if isinstance(t, sa.BigInteger):
        return pa.int64()
    if isinstance(t, sa.SmallInteger | sa.Integer):
        return pa.int64() if isinstance(t, sa.BigInteger) else pa.int32()
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.Numeric) and not isinstance(t, sa.Float):
        p, s = t.precision, t.scale
        return pa.decimal128(p or 38, s if s is not None else (0 if p else 10))
    if isinstance(t, sa.Float):
        return pa.float64()
    if isinstance(t, sa.DateTime):
        return pa.timestamp("us", tz="UTC") if getattr(t, "timezone", False) else pa.timestamp("us")
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.LargeBinary):
        return pa.binary()
    return pa.string()


@dataclass(frozen=True)
class HotTable:
    """A reflected hot table."""

    name: str
    schema: str | None
    columns: dict[str, pa.DataType]
    sql_types: dict[str, str]
    table: sa.Table

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(n, t) for n, t in self.columns.items()])


def reflect(engine: sa.Engine, table: str, schema: str | None = None) -> HotTable:
    """The hot table's columns and primary key: all datazones reads of it. (Not ``Table(autoload_with=...)``:
    that also reflects foreign keys, indexes, constraints and comments, 9 catalogue queries on PostgreSQL where
    these are 2, and ~25 ms of every run.)"""
    insp = sa.inspect(engine)
    where = f"{schema}.{table}" if schema else table
    missing = ConfigError(f"table {where!r} does not exist in the hot store {engine.url.render_as_string()!r}",
                          fix="check `table:`/`schema:` of the dataset, or run `zones demo seed` for the demo")
    try:
        columns = insp.get_columns(table, schema=schema)
    except sa.exc.NoSuchTableError:
        raise missing from None
    except sa.exc.OperationalError as exc:  # SQLite: a schema that is not an attached database
        if engine.dialect.name == "sqlite" and "unknown database" in str(exc.orig):
            raise missing from None
        raise
    pk = set(insp.get_pk_constraint(table, schema=schema).get("constrained_columns") or ())
    t = sa.Table(table, sa.MetaData(), *(sa.Column(c["name"], c["type"], nullable=c["nullable"],
                                                   primary_key=c["name"] in pk) for c in columns), schema=schema)
    cols = {c.name: arrow_type(c.type) for c in t.columns}
    # SQLite stores TIMESTAMPTZ as declared text; our DDL names it TIMESTAMP WITH TIME ZONE / DATETIME.
    if engine.dialect.name == "sqlite":
        for c in t.columns:
            if isinstance(c.type, sa.DateTime):
                cols[c.name] = pa.timestamp("us", tz="UTC")
    return HotTable(table, schema, cols, {c.name: str(c.type) for c in t.columns}, t)


def rows_to_arrow(rows: Sequence[Sequence[Any]], names: list[str], types: dict[str, pa.DataType]
                  ) -> tuple[pa.Table, pa.Array]:
    """Columnar conversion of DB-API rows (SQLite text or driver objects); values of the wrong type are flagged
    (and kept raw in ``_dz_raw``), not lost."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays, bad = [], None
    for name, vals in zip(names, cols, strict=True):
        target = types[name]
        arr, flags = _convert(list(vals), target)
        arrays.append(arr)
        if flags is not None:
            bad = flags if bad is None else pc.or_(bad, flags)
    table = pa.table(arrays, names=names)
    if bad is None:
        return table, pa.array([False] * len(rows), pa.bool_())
    # Keep the raw values of flagged rows (as JSON text) so quarantine holds what the source really had.
    flags = bad.to_pylist()
    raw = [json.dumps(dict(zip(names, r, strict=True)), default=str, ensure_ascii=False) if f else None
           for r, f in zip(rows, flags, strict=True)]
    return table.append_column(RAW_COLUMN, pa.array(raw, pa.string())), bad


def _convert_strict(vals: list[Any], target: pa.DataType) -> pa.Array:
    """Convert SQLite values column-wise; raise if any value is not of the column's type."""
    if pa.types.is_timestamp(target) or pa.types.is_date(target):
        if all(isinstance(v, date | None) for v in vals):  # a driver that returns real dates/datetimes
            if pa.types.is_timestamp(target):
                vals = [v if v is None or v.tzinfo else v.replace(tzinfo=UTC) for v in vals]  # type: ignore[union-attr]
            return pa.array(vals, target)
        if not all(isinstance(v, str | None) for v in vals):
            raise TypeError("not text")
        raw = pa.array(vals, pa.string())
        if pa.types.is_date(target):
            return raw.cast(pa.date32())
        # ISO text as SQLite holds it: 'T' or ' ', an optional fraction (more than 6 digits cut to µs) and an
        # optional offset (Z, +hh:mm, -hhmm), applied; text without one is UTC. A date alone is its midnight.
        text = pc.replace_substring_regex(raw, r"^(\d{4}-\d\d-\d\d)T", r"\1 ")
        text = pc.replace_substring_regex(text, r"^(\d{4}-\d\d-\d\d)$", r"\1 00:00:00")
        text = pc.replace_substring_regex(text, r"(\.\d{6})\d+", r"\1")
        zoned = pc.match_substring_regex(text, r"\d:\d\d(:\d\d(\.\d+)?)? ?(Z|[+-]\d\d(:?\d\d)?)$")
        text = pc.if_else(zoned, text, pc.binary_join_element_wise(text, pa.scalar("+00:00"), pa.scalar("")))
        return text.cast(pa.timestamp("us", tz="UTC")).cast(target)
    if pa.types.is_boolean(target):
        if not all(v in (0, 1, None) or isinstance(v, bool) for v in vals):
            raise TypeError("not a boolean")
        return pa.array([None if v is None else bool(v) for v in vals], pa.bool_())
    if pa.types.is_decimal(target):
        if not all(isinstance(v, int | float | Decimal | None) and not isinstance(v, bool) for v in vals):
            raise TypeError("not a number")
        return pa.array([None if v is None else Decimal(str(v)) for v in vals], target)
    if pa.types.is_integer(target) and not all(isinstance(v, int | None) and not isinstance(v, bool) for v in vals):
        raise TypeError("not an integer")
    if pa.types.is_string(target) and not all(isinstance(v, str | None) for v in vals):
        raise TypeError("not text")
    return pa.array(vals, target)


_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError, ArithmeticError)


def _convert(vals: list[Any], target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    try:
        return _convert_strict(vals, target), None
    except _ERRORS:
        out, flags = [], []
        for v in vals:
            try:
                out.append(_convert_strict([v], target)[0].as_py())
                flags.append(False)
            except _ERRORS:
                out.append(None)
                flags.append(True)
        return pa.array(out, target), pa.array(flags, pa.bool_())


def _cast(t: pa.Table, schema: pa.Schema) -> pa.Table:
    """The page under our schema, cast only where a type differs (schema equality ignores the PostgreSQL type
    names ADBC adds as field metadata). Not combined into one chunk: every consumer takes chunked columns, and
    copying each page cost CPU and peak memory for nothing."""
    return t if t.schema == schema else t.cast(schema)


@dataclass
class Page:
    data: pa.Table
    bad_type: pa.Array  # bool per row: a value could not be read as its column type (SQLite only)
    last_key: tuple[Any, ...] | None


class HotReader:
    """Streams one hot table as keyset-ordered pages, each a consistent Arrow table.

    One query per run (``ORDER BY pk``), streamed and cut into pages client-side: PostgreSQL serves it with a
    single index scan through the binary COPY path, twice as fast as re-planning a ``LIMIT`` query per page. The
    cursor (last key of the last committed page) makes it resumable: a rerun starts at ``pk > cursor``. SQL is
    built with SQLAlchemy Core, so identifiers are quoted and values rendered by the dialect, never by string
    formatting.
    """

    def __init__(self, engine: sa.Engine, table: HotTable, *, key: list[str], watermark: str) -> None:
        self.engine, self.table, self.key, self.watermark = engine, table, key, watermark
        self.dialect = engine.dialect
        self._adbc: Any = None

    @property
    def is_postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    def _wm_value(self, t: datetime) -> Any:
        if self.is_postgres:
            return t
        return (t.astimezone(UTC) if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%S.%f")

    def select(self, *, hi: datetime, lo: datetime | None, after: tuple[Any, ...] | None) -> sa.Select[Any]:
        t = self.table.table
        wm: sa.ColumnElement[Any] = t.c[self.watermark]
        if not self.is_postgres:  # SQLite stores timestamps as text in a fixed, sortable format
            wm = sa.type_coerce(wm, sa.String)
        if lo is None:  # a full load also reads rows without a watermark: the gate quarantines them, visibly
            conds = [sa.or_(wm <= self._wm_value(hi), wm.is_(None))]
        else:
            conds = [wm <= self._wm_value(hi), wm > self._wm_value(lo)]
        keys = [t.c[k] for k in self.key]
        if after is not None:
            conds.append(keys[0] > after[0] if len(keys) == 1 else sa.tuple_(*keys) > sa.tuple_(*after))
        return sa.select(*[t.c[c] for c in self.table.columns]).where(*conds).order_by(*keys)

    def any_rows(self, *, hi: datetime, lo: datetime | None) -> bool:
        """Whether the window holds a row at all: one indexed ``LIMIT 1`` probe (a millisecond or two)."""
        probe = self.select(hi=hi, lo=lo, after=None).with_only_columns(sa.literal(1)).order_by(None).limit(1)
        with self.engine.connect() as c:
            return c.execute(probe).first() is not None

    def pages(self, *, hi: datetime, lo: datetime | None, after: tuple[Any, ...] | None,
              limit: int) -> Iterator[Page]:
        """Yield pages of ``limit`` rows (the last one shorter, possibly empty) in key order."""
        query = self.select(hi=hi, lo=lo, after=after)
        if self.is_postgres:
            sql = str(query.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True}))
            from adbc_driver_manager import AdbcStatement

            stmt = AdbcStatement(self._adbc_conn())
            try:
                stmt.set_sql_query(sql)
                stream, _ = stmt.execute_query()
                yield from self._cut(pa.RecordBatchReader.from_stream(stream), limit)
            finally:
                stmt.close()
            return
        # Raw driver values on SQLite: SQLAlchemy's type processors would convert (and choke on) the very values
        # the gate must see as they are.
        sql = str(query.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True}))
        with self.engine.connect() as c:
            result = c.exec_driver_sql(sql)
            names = list(self.table.columns)
            while True:
                rows = result.fetchmany(limit)
                data, bad = rows_to_arrow(rows, names, self.table.columns)
                yield self._page(data, bad)
                if len(rows) < limit:
                    return

    def _page(self, data: pa.Table, bad: pa.Array) -> Page:
        last = None
        if data.num_rows:
            last = tuple(data.column(k)[data.num_rows - 1].as_py() for k in self.key)
        return Page(data, bad, last)

    def _cut(self, reader: Any, limit: int) -> Iterator[Page]:
        schema = self.table.arrow_schema
        buf: list[pa.RecordBatch] = []
        n = 0
        for batch in reader:
            buf.append(batch)
            n += batch.num_rows
            while n >= limit:
                t = pa.Table.from_batches(buf)
                page, rest = t.slice(0, limit), t.slice(limit)
                yield self._page(_cast(page, schema), pa.repeat(False, limit))
                buf, n = rest.to_batches(), rest.num_rows
        t = pa.Table.from_batches(buf, schema=reader.schema) if buf else reader.schema.empty_table()
        yield self._page(_cast(t, schema), pa.repeat(False, t.num_rows))

    def page(self, *, hi: datetime, lo: datetime | None, after: tuple[Any, ...] | None, limit: int) -> Page:
        """The first page only (tests and small reads)."""
        gen = iter(self.pages(hi=hi, lo=lo, after=after, limit=limit))
        try:
            return next(gen)
        finally:
            close = getattr(gen, "close", None)
            if close:
                close()

    def _adbc_conn(self) -> Any:
        """ADBC's own connection object, not its DB-API layer: ``adbc_driver_manager.dbapi`` imports polars and
        pyarrow.dataset on the way (~0.3 s of CPU at the start of every run, taken from GX's import)."""
        if self._adbc is None:
            import adbc_driver_postgresql as adbc_pg
            from adbc_driver_manager import AdbcConnection

            url = self.engine.url.set(drivername="postgresql")
            opts = dict(url.query)
            url = url.set(query={k: v for k, v in opts.items() if k != "options"})
            uri = url.render_as_string(hide_password=False)
            if "options" in opts:
                sep = "&" if "?" in uri else "?"
                uri += f"{sep}options={quote(str(opts['options']), safe='')}"
            db = adbc_pg.connect(uri)
            try:
                self._adbc = (db, AdbcConnection(db))  # autocommit (ADBC's default): one COPY, one snapshot
            except BaseException:
                db.close()
                raise
        return self._adbc[1]

    def count(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(self.table.table)).scalar() or 0)

    def scan(self, columns: list[str], *, chunk: int = 250_000) -> Iterator[pa.Table]:
        """Every row's ``columns``, ``chunk`` rows at a time, as Arrow in the reflected column types: memory stays
        one chunk whatever the table's size. PostgreSQL through ADBC's binary COPY, SQLite through the driver."""
        t = self.table.table
        schema = pa.schema([self.table.arrow_schema.field(c) for c in columns])
        sql = str(sa.select(*[t.c[c] for c in columns]).compile(dialect=self.dialect))
        if self.is_postgres:
            from adbc_driver_manager import AdbcStatement

            stmt = AdbcStatement(self._adbc_conn())
            try:
                stmt.set_sql_query(sql)
                stream, _ = stmt.execute_query()
                buf: list[pa.RecordBatch] = []
                n = 0
                for batch in pa.RecordBatchReader.from_stream(stream):
                    buf.append(batch)
                    n += batch.num_rows
                    while n >= chunk:
                        whole = pa.Table.from_batches(buf)
                        yield _cast(whole.slice(0, chunk), schema)
                        rest = whole.slice(chunk)
                        buf, n = rest.to_batches(), rest.num_rows
                if n:
                    yield _cast(pa.Table.from_batches(buf), schema)
            finally:
                stmt.close()
            return
        with self.engine.connect() as c:
            result = c.exec_driver_sql(sql)
            while rows := result.fetchmany(chunk):
                yield pa.table([pa.array([r[i] for r in rows]) for i in range(len(columns))], names=columns)

    def close(self) -> None:
        if self._adbc is not None:
            db, conn = self._adbc
            self._adbc = None
            conn.close()
            db.close()
