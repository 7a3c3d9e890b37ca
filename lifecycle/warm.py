"""The warm zone: Delta tables on local disk or S3, written idempotently.

Exactly-once: every commit carries a Delta app transaction ``(app_id, seq)``. Delta records but does not enforce
it, so :meth:`WarmTable.committed` is checked before every write, under the dataset's writer lock
(:mod:`lifecycle.locks`). Tables are created with the change data feed on and zstd-compressed Parquet, partitioned
by business period; any Delta reader (DuckDB, Polars, Spark) can read them without datazones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from lifecycle.warm_files import OPAQUE_ENCODING, local_path, write_files
from zones.errors import SchemaChangeError

# 8 MiB files (~100k rows here): a MERGE rewrites only the files whose key range it touches, so smaller files keep
# incremental runs cheap; compaction (`optimize`) can merge them later for scans.
TARGET_FILE_SIZE = 8 * 2**20
TABLE_CONFIG = {"delta.enableChangeDataFeed": "true", "delta.appendOnly": "false",
                "delta.targetFileSize": str(TARGET_FILE_SIZE)}
# Marks MERGE source rows that carry a key under a retired pseudonym key (see WarmTable.merge); never written.
STALE_MARKER = "_dz_stale_key"
# Safe widenings warm follows automatically; anything else is a terminal schema change.
_WIDEN = {(pa.int32(), pa.int64()), (pa.int16(), pa.int64()), (pa.int16(), pa.int32()), (pa.float32(), pa.float64())}


def _writer_props(opaque: list[str] | None = None, dense: list[str] | None = None) -> Any:
    """zstd Parquet; pseudonym and ciphertext columns skip dictionary encoding and min/max statistics (random
    bytes gain nothing from either, and statistics would copy values into the Delta log) and are written with
    DELTA_LENGTH_BYTE_ARRAY (see :mod:`lifecycle.warm_files`); ``dense`` columns (the
    key and the watermark: nearly every value distinct) skip only the dictionary."""
    from deltalake import ColumnProperties, WriterProperties

    cols = {c: ColumnProperties(dictionary_enabled=False) for c in dense or []}
    cols.update({c: ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE", encoding=OPAQUE_ENCODING)
                 for c in opaque or []})
    return WriterProperties(compression="ZSTD", compression_level=1, column_properties=cols or None)


def _commit(app_id: str, seq: int, meta: dict[str, str]) -> Any:
    from deltalake import CommitProperties, Transaction

    return CommitProperties(app_transactions=[Transaction(app_id=app_id, version=seq)], custom_metadata=meta)


class WarmTable:
    def __init__(self, uri: str, storage_options: dict[str, str] | None = None, *,
                 opaque_columns: list[str] | None = None, dense_columns: list[str] | None = None) -> None:
        self.uri, self.storage_options = uri, storage_options
        self.opaque_columns = opaque_columns or []
        # Parquet tries a dictionary on every page of every column and gives up when it outgrows its page (the
        # key, the watermark): skipping that on dense columns saved ~15 ms of a 400k-row page and made it smaller
        self.dense_columns = dense_columns or []
        self._table: Any = None

    def _dt(self) -> Any:
        """The table at its latest version, opened once and again only after our own commits (a log replay)."""
        from deltalake import DeltaTable

        if self._table is None:
            self._table = DeltaTable(self.uri, storage_options=self.storage_options)
        return self._table

    def refresh(self) -> None:
        self._table = None

    def exists(self) -> bool:
        from deltalake import DeltaTable

        if self._table is not None:
            return True
        return bool(DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options))

    def committed(self, app_id: str) -> int:
        """Last app-transaction version committed for ``app_id`` (0 if none or no table)."""
        if not self.exists():
            return 0
        return int(self._dt().transaction_version(app_id) or 0)

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first (commit info: operation, metrics, our custom metadata)."""
        return list(self._dt().history(limit)) if self.exists() else []

    def version(self) -> int | None:
        return int(self._dt().version()) if self.exists() else None

    def schema(self) -> pa.Schema | None:
        return pa.schema(self._dt().schema().to_arrow()) if self.exists() else None

    def check_schema(self, incoming: pa.Schema) -> bool:
        """Raise on an incompatible type change; return True when new columns must be merged in."""
        current = self.schema()
        if current is None:
            return False
        new_cols = False
        for f in incoming:
            if f.name not in current.names:
                new_cols = True
                continue
            old = current.field(f.name).type
            if _same(old, f.type) or (old, f.type) in _WIDEN:
                continue
            raise SchemaChangeError(
                f"column {f.name!r} changed type in the hot store: warm has {old}, hot now gives {f.type}. "
                "This is not a safe widening; create a new column (or a new dataset version) and migrate warm "
                "explicitly — datazones will not rewrite history silently")
        return new_cols

    def append(self, data: pa.Table | pa.RecordBatchReader, *, partition_by: list[str] | None, app_id: str,
               seq: int, meta: dict[str, str], merge_schema: bool = False) -> int:
        from deltalake import write_deltalake

        path = local_path(self.uri)
        if path is not None and isinstance(data, pa.Table) and not merge_schema and data.num_rows:
            if self._append_files(path, data, partition_by, _commit(app_id, seq, meta)):
                self.refresh()
                return int(self._dt().version())
        write_deltalake(self.uri, data, mode="append", partition_by=partition_by or None,
                        configuration=TABLE_CONFIG, storage_options=self.storage_options,
                        schema_mode="merge" if merge_schema else None, target_file_size=TARGET_FILE_SIZE,
                        writer_properties=_writer_props(self.opaque_columns, self.dense_columns),
                        commit_properties=_commit(app_id, seq, meta))
        self.refresh()
        return int(self._dt().version())

    def _append_files(self, path: str, data: pa.Table, partition_by: list[str] | None, commit: Any) -> bool:
        """Append through :mod:`lifecycle.warm_files` (Arrow's Parquet writer, a delta-rs commit). False when the
        table's columns differ from the batch's (a schema merge): ``write_deltalake`` handles that."""
        from deltalake import Schema
        from deltalake.transaction import create_table_with_add_actions

        current = self.schema()
        if current is not None:
            if current.names != data.schema.names:
                return False
            data = data.cast(current)  # safe widenings (check_schema refused the rest), e.g. int32 -> int64
        # Files of about TARGET_FILE_SIZE on disk: Arrow's in-memory size shrinks ~2.5x under zstd here.
        per_row = max(1, data.nbytes // max(1, data.num_rows))
        rows_per_file = max(10_000, int(TARGET_FILE_SIZE * 2.5) // per_row)
        actions = write_files(path, data, partition_by=partition_by, opaque=self.opaque_columns,
                              dense=self.dense_columns, rows_per_file=rows_per_file)
        if current is None:
            create_table_with_add_actions(self.uri, Schema.from_arrow(data.schema), actions, mode="append",
                                          partition_by=partition_by or None, configuration=TABLE_CONFIG,
                                          storage_options=self.storage_options, commit_properties=commit)
        else:
            self._dt().create_write_transaction(actions, mode="append", schema=self._dt().schema(),
                                                partition_by=partition_by or None, commit_properties=commit)
        return True

    def merge(self, data: pa.Table, *, keys: list[str], newer: str, app_id: str, seq: int,
              meta: dict[str, str], merge_schema: bool = False, compare: list[str] | None = None,
              stale: pa.Table | None = None) -> dict[str, Any]:
        """MERGE by key: insert new rows, update a row if the source version is newer (latest wins) — or, with
        ``compare``, as new but different in one of those columns: a second change within one tick of the
        watermark's clock, read later, is the later version.

        ``stale`` (after a pseudonym key rotation, :func:`~lifecycle.transform.stale_keys`): the keys the same
        rows had under retired pseudonym keys. They join the source as marker rows (``_dz_stale_key``, never
        written), and the one MERGE deletes the warm rows they match while it inserts the rows under their new
        key: one row per key in warm, in the same commit (the change data feed shows a delete and an insert)."""
        on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
        when = f's."{newer}" > t."{newer}"'
        current = self.schema()
        both = [c for c in compare or [] if c in data.column_names and (current is None or c in current.names)]
        if both:
            differs = " OR ".join(f'(s."{c}" IS DISTINCT FROM t."{c}")' for c in both)
            when = f'{when} OR (s."{newer}" = t."{newer}" AND ({differs}))'
        source = data if stale is None or stale.num_rows == 0 else with_stale_rows(data, stale)
        # streamed_exec=False lets delta-rs derive an early pruning predicate from the source's key range,
        # so only files whose key statistics overlap the changed rows are read and rewritten.
        merger = self._dt().merge(source, on, source_alias="s", target_alias="t", merge_schema=merge_schema,
                                  streamed_exec=False,
                                  writer_properties=_writer_props(self.opaque_columns, self.dense_columns),
                                  commit_properties=_commit(app_id, seq, meta))
        if source is data:
            merger = merger.when_matched_update_all(predicate=when).when_not_matched_insert_all()
        else:  # the first matching clause wins; the marker column reaches no target row (nor, merge_schema, schema)
            live = f'NOT s."{STALE_MARKER}"'
            merger = (merger.when_matched_delete(predicate=f's."{STALE_MARKER}"')
                      .when_matched_update_all(predicate=f"{live} AND ({when})", except_cols=[STALE_MARKER])
                      .when_not_matched_insert_all(predicate=live, except_cols=[STALE_MARKER]))
        metrics = merger.execute()
        self.refresh()
        metrics["version"] = int(self._dt().version())
        return dict(metrics)

    def delete_versions(self, versions: pa.Table, *, app_id: str, meta: dict[str, str]) -> int:
        """Delete exactly the rows matching ``versions`` on every column it has (key + watermark), in one commit
        under the next app-transaction version of ``app_id``; returns the rows deleted."""
        if versions.num_rows == 0:
            return 0
        on = " AND ".join(f't."{k}" = s."{k}"' for k in versions.column_names)
        m = (self._dt().merge(versions, on, source_alias="s", target_alias="t", streamed_exec=False,
                              commit_properties=_commit(app_id, self.committed(app_id) + 1, meta))
             .when_matched_delete().execute())
        self.refresh()
        return int(m.get("num_target_rows_deleted", 0))

    def dataset(self) -> Any:
        """The table as a pyarrow dataset (for filtered scans)."""
        return self._dt().to_pyarrow_dataset()

    def delete(self, predicate: str, *, app_id: str, seq: int, meta: dict[str, str]) -> dict[str, Any]:
        out = dict(self._dt().delete(predicate, commit_properties=_commit(app_id, seq, meta)))
        self.refresh()
        return out

    def update(self, predicate: str, updates: dict[str, str], *, meta: dict[str, str]) -> dict[str, Any]:
        """Set ``updates`` (SQL expressions) on the rows matching ``predicate``, in one commit."""
        from deltalake import CommitProperties

        out = dict(self._dt().update(predicate=predicate, updates=updates,
                                     commit_properties=CommitProperties(custom_metadata=meta)))
        self.refresh()
        return out

    def count(self) -> int:
        if not self.exists():
            return 0
        return sum(int(n) for n in self._dt().get_add_actions(flatten=True).column("num_records").to_pylist())

    def to_arrow(self, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """Rows as one Arrow table with plain types (MERGE writes string_view in some files, appends do not)."""
        if not self.exists():
            return pa.table({})
        return plain_types(self._dt().to_pyarrow_dataset().to_table(columns=columns, filter=filter)
                           if filter is not None else pa.table(self._dt().to_pyarrow_table(columns=columns)))

    def file_sizes(self) -> dict[str, int]:
        """Current data files and their sizes (to measure what a commit added)."""
        if not self.exists():
            return {}
        acts = self._dt().get_add_actions(flatten=True)
        return dict(zip(acts.column("path").to_pylist(), acts.column("size_bytes").to_pylist(), strict=True))


def with_stale_rows(data: pa.Table, stale: pa.Table) -> pa.Table:
    """``data`` and, below it, one marker row per ``stale`` key (its key columns; every other column null), with
    a boolean ``_dz_stale_key`` column telling them apart."""
    if STALE_MARKER in data.column_names:
        raise ValueError(f"{STALE_MARKER!r} is reserved for MERGE's stale-key rows")
    m = stale.num_rows
    schema = pa.schema([f.with_nullable(True) for f in data.schema])
    markers = pa.Table.from_arrays([stale.column(f.name).cast(f.type) if f.name in stale.column_names
                                    else pa.nulls(m, f.type) for f in schema], schema=schema)
    out = pa.concat_tables([data.cast(schema), markers])
    flag = np.arange(out.num_rows) >= data.num_rows
    return out.append_column(pa.field(STALE_MARKER, pa.bool_(), nullable=False), pa.array(flag, pa.bool_()))


def plain_types(t: pa.Table) -> pa.Table:
    """string_view/binary_view → string/binary, so every reader and kernel sees one type per column."""
    fields = [pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else pa.binary()
                       if pa.types.is_binary_view(f.type) else f.type, f.nullable) for f in t.schema]
    target = pa.schema(fields)
    return t if target == t.schema else t.cast(target)


def _same(a: pa.DataType, b: pa.DataType) -> bool:
    if a == b:
        return True
    # Delta has no tz-naive/aware or string/large_string distinction worth stopping for.
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return True
    if pa.types.is_string(a) or pa.types.is_large_string(a) or pa.types.is_string_view(a):
        return pa.types.is_string(b) or pa.types.is_large_string(b) or pa.types.is_string_view(b)
    if pa.types.is_binary(a) or pa.types.is_large_binary(a) or pa.types.is_binary_view(a):
        return pa.types.is_binary(b) or pa.types.is_large_binary(b) or pa.types.is_binary_view(b)
    return False
