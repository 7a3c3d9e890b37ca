"""Appends to a local Delta table written by Arrow's C++ Parquet writer and committed through delta-rs.

Why: on the 5M-row bench table delta-rs's own writer (``write_deltalake``) spent 11.4 s of CPU to write what
``pyarrow.parquet`` writes in 6.8 s with the same codec, level, dictionary and statistics choices, and on a 2-core
machine that CPU is taken from extraction and the gate. delta-rs still does everything that needs a protocol: it
creates the table (configuration, protocol versions), commits the add actions with our app transaction in one
atomic log entry, and does every MERGE, DELETE and schema change.

The files are ordinary Delta data files: hive-style partition folders, the partition column left out of the file,
and per-file statistics in the log (``numRecords``, ``nullCount``; ``minValues``/``maxValues`` for integers, dates,
UTC timestamps and strings up to 32 characters — exact, so data skipping and MERGE's file pruning stay correct;
other types get no min/max, which a reader treats as "may match"). Opaque columns (pseudonyms, ciphertexts) get
no statistics at all, as with delta-rs, and DELTA_LENGTH_BYTE_ARRAY encoding (so does ``write_deltalake``). Only
local tables take this path; object stores use ``write_deltalake``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MAX_STAT_CHARS = 32
# Opaque columns (hex pseudonyms, ciphertexts) keep their lengths apart from their bytes: with PLAIN's 4-byte
# length before every value zstd spent its time on those repeats; here it only entropy-codes the digits. A
# 400k-row bench page: 293 → 226 ms to write, 40.9 → 38.8 MB. Every Parquet reader we target reads it.
OPAQUE_ENCODING: Final = "DELTA_LENGTH_BYTE_ARRAY"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


def local_path(uri: str) -> str | None:
    """The filesystem path of a local table URI, or None for an object store."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return None if "://" in uri else uri


_UNITS_PER_MS = {"ms": 1, "us": 1000, "ns": 1_000_000}


def _stat(v: Any, typ: pa.DataType, *, upper: bool) -> Any:
    if pa.types.is_timestamp(typ):  # milliseconds, as Delta readers expect; rounded outward, so still a bound
        if typ.unit == "s":
            ms = int(v) * 1000
        else:  # v counts the column's unit since the epoch
            per = _UNITS_PER_MS[typ.unit]
            ms = -(-int(v) // per) if upper else int(v) // per
        d = datetime.fromtimestamp(ms // 1000, UTC)
        frac = f".{ms % 1000:03d}" if ms % 1000 else ""
        return d.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"
    if pa.types.is_date(typ):
        return v.isoformat()
    return v


def _bounded(typ: pa.DataType) -> bool:
    return (pa.types.is_integer(typ) or pa.types.is_date32(typ) or pa.types.is_string(typ)
            or pa.types.is_large_string(typ) or (pa.types.is_timestamp(typ) and typ.tz in ("UTC", "+00:00")))


def stats(t: pa.Table, opaque: set[str]) -> str:
    """Delta statistics JSON of one data file."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for f in t.schema:
        if f.name in opaque:
            continue
        col = t.column(f.name)
        nulls[f.name] = col.null_count
        if not _bounded(f.type) or col.null_count == len(col):
            continue
        mm = pc.min_max(col.cast(pa.int64()) if pa.types.is_timestamp(f.type) else col)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        if isinstance(lo, str) and max(len(lo), len(hi)) > MAX_STAT_CHARS:
            continue  # a truncated max would need rounding up; no bound is always correct
        mins[f.name] = _stat(lo, f.type, upper=False)
        maxs[f.name] = _stat(hi, f.type, upper=True)
    # Raw UTF-8, not \u escapes: delta-rs decodes an escaped surrogate pair above U+1FFFF 0x10000 too low, and a
    # max read too low makes MERGE and data skipping pass over the file (a duplicate instead of an update).
    return json.dumps({"numRecords": t.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
                      ensure_ascii=False)


def _partitions(t: pa.Table, by: list[str] | None) -> list[tuple[dict[str, str | None], pa.Table]]:
    if not by:
        return [({}, t)]
    if len(by) != 1:
        raise ValueError("warm tables are partitioned by one column")
    name = by[0]
    col = t.column(name)
    runs = _sorted_runs(col)
    if runs is not None:  # rows already in partition order (the usual case): zero-copy slices, no filters
        return [({name: None if v is None else str(v)}, t.slice(lo, hi - lo).drop_columns([name]))
                for v, lo, hi in runs]
    out = []
    for v in pc.unique(col).to_pylist():
        mask = pc.is_null(col) if v is None else pc.fill_null(pc.equal(col, pa.scalar(v, col.type)), False)
        part = t.filter(mask).drop_columns([name])
        out.append(({name: None if v is None else str(v)}, part))
    return out


def _sorted_runs(col: pa.ChunkedArray) -> list[tuple[Any, int, int]] | None:
    """(value, start, stop) of each partition when a null-free integer partition column never decreases (pages
    are read in key order, and the business period mostly grows with the key); None otherwise."""
    if col.null_count or not pa.types.is_integer(col.type) or len(col) == 0:
        return None
    v = col.to_numpy()
    if len(v) > 1 and not bool((v[1:] >= v[:-1]).all()):
        return None
    starts = [0, *(np.flatnonzero(v[1:] != v[:-1]) + 1).tolist()]
    stops = [*starts[1:], len(v)]
    return [(int(v[a]), a, b) for a, b in zip(starts, stops, strict=True)]


def write_files(path: str, t: pa.Table, *, partition_by: list[str] | None, opaque: list[str],
                rows_per_file: int, dense: list[str] | None = None) -> list[Any]:
    """Write ``t`` as Parquet data files under the table folder ``path``; returns their Delta add actions.
    ``opaque`` columns get neither dictionary nor statistics, ``dense`` ones no dictionary."""
    from deltalake.transaction import AddAction

    opaque_set = set(opaque)
    no_dict = set(dense or [])
    tag = uuid.uuid4()
    actions = []
    n = 0
    for values, part in _partitions(t, partition_by):
        folder = "/".join(f"{k}={NULL_PARTITION if v is None else v}" for k, v in values.items())
        os.makedirs(os.path.join(path, folder), exist_ok=True)  # also the table's own folder on a first write
        plain = [c for c in part.column_names if c not in opaque_set]
        dictionary = [c for c in plain if c not in no_dict]
        encoding = {c: OPAQUE_ENCODING for c in part.column_names if c in opaque_set}
        for start in range(0, max(part.num_rows, 1), rows_per_file):
            chunk = part.slice(start, rows_per_file)
            if chunk.num_rows == 0:
                continue
            name = f"part-{n:05d}-{tag}-c000.zstd.parquet"
            rel = f"{folder}/{name}" if folder else name
            n += 1
            full = os.path.join(path, rel)
            pq.write_table(chunk, full, compression="zstd", compression_level=1, use_dictionary=dictionary,
                           write_statistics=plain, column_encoding=encoding or None)
            actions.append(AddAction(rel, os.path.getsize(full), values, int(time.time() * 1000), True,
                                     stats(chunk, opaque_set)))
    return actions
