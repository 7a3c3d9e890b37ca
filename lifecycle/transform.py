"""Hot rows → warm rows at the zone boundary: pseudonymise, seal, generalise, drop — all vectorised.

Warm never holds a raw direct identifier. A pseudonymised column holds ``HMAC-SHA-256(key, value)`` as hex (the
same value in every table, so analysts can join); a sealed column's original is kept only as ``<col>__sealed``, an
AEAD ciphertext under the seal key (held by the archive function) with the dataset and column as associated data,
so the cold zone can restore the authentic record. Every warm row also carries ``_dz_batch`` (its ledger batch),
``_dz_key_id`` (the pseudonym key version; rotation breaks linkability) and ``_dz_period`` (warm partition).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from lifecycle.protect import Keys, canonical_text, pseudonymise, seal, seal_siv
from zones.errors import ConfigError, SchemaChangeError
from zones.hot import HotTable
from zones.model import Column, Dataset

SEALED_SUFFIX = "__sealed"
META_COLS = ("_dz_batch", "_dz_key_id", "_dz_period")


@dataclass(frozen=True)
class ColumnPlan:
    name: str
    source_type: pa.DataType
    column: Column | None  # None: a hot column not declared in zones.yaml (added as unclassified)

    @property
    def policy(self) -> str:
        return self.column.warm if self.column else "keep"

    @property
    def sealed(self) -> bool:
        return bool(self.column and self.column.sealed and self.column.lossy)


def plan_columns(ds_name: str, ds: Dataset, hot: HotTable, *, file: str | None = None) -> list[ColumnPlan]:
    missing = [c for c in ds.columns if c not in hot.columns]
    if missing:
        raise ConfigError(
            f"column(s) {', '.join(missing)} declared for dataset {ds_name!r} do not exist in hot table "
            f"{hot.name!r} (it has: {', '.join(hot.columns)})", file=file,
            key_path=f"datasets.{ds_name}.columns.{missing[0]}", fix="fix the column name or remove it")
    plans = []
    for name, typ in hot.columns.items():
        col = ds.columns.get(name)
        if col is None:
            if ds.on_new_column == "fail":
                raise SchemaChangeError(
                    f"hot table {hot.name!r} has a column {name!r} ({typ}) not declared in zones.yaml and "
                    f"datasets.{ds_name}.on_new_column is 'fail': declare it with its personal-data class")
            if ds.on_new_column == "ignore":
                continue
        plans.append(ColumnPlan(name, typ, col))
    return plans


def needs_seal_key(plans: list[ColumnPlan]) -> bool:
    return any(p.sealed for p in plans)


def seal_aad(dataset: str, column: str) -> bytes:
    return f"datazones:{dataset}:{column}".encode()


def period_of(values: pa.ChunkedArray | pa.Array, mode: str) -> pa.Array | pa.ChunkedArray:
    if mode == "year":
        return pc.year(values).cast(pa.int32())
    return pc.strftime(values, format="%Y-%m")


_CHAPTERS = [("A00", "B99", "I"), ("C00", "D48", "II"), ("D50", "D89", "III"), ("E00", "E90", "IV"),
             ("F00", "F99", "V"), ("G00", "G99", "VI"), ("H00", "H59", "VII"), ("H60", "H95", "VIII"),
             ("I00", "I99", "IX"), ("J00", "J99", "X"), ("K00", "K93", "XI"), ("L00", "L99", "XII"),
             ("M00", "M99", "XIII"), ("N00", "N99", "XIV"), ("O00", "O99", "XV"), ("P00", "P96", "XVI"),
             ("Q00", "Q99", "XVII"), ("R00", "R99", "XVIII"), ("S00", "T98", "XIX"), ("V01", "Y98", "XX"),
             ("Z00", "Z99", "XXI"), ("U00", "U99", "XXII")]


def icd10_chapter(code: str | None) -> str | None:
    if not code:
        return None
    head = code.strip().upper().replace(".", "")[:3]
    for lo, hi, ch in _CHAPTERS:
        if lo <= head <= hi:
            return ch
    return None


def generalise(values: pa.ChunkedArray, how: str) -> pa.ChunkedArray | pa.Array:
    t = values.type
    if how in ("year", "decade"):
        years = pc.year(values) if (pa.types.is_date(t) or pa.types.is_timestamp(t)) else values.cast(pa.int32())
        years = years.cast(pa.int32())
        return years if how == "year" else pc.multiply(pc.divide(years, 10), 10).cast(pa.int32())
    if how == "year_month":
        return pc.strftime(values, format="%Y-%m")
    if how == "county":
        return pc.utf8_slice_codeunits(values.cast(pa.string()), 0, 2)
    if how == "icd10_chapter":  # vectorised over the distinct codes, which are few
        text = values.cast(pa.string())
        uniq = pc.unique(text)
        mapped = pa.array([icd10_chapter(v) for v in uniq.to_pylist()], pa.string())
        return pc.take(mapped, pc.index_in(text, value_set=uniq))
    raise ValueError(f"unknown generalisation {how!r}")


def constant(value: str, n: int) -> pa.Array:
    """A string column of one repeated value, built without a Python list."""
    return pc.fill_null(pa.nulls(n, pa.string()), pa.scalar(value, pa.string()))


def crypto_columns(plans: list[ColumnPlan]) -> list[str]:
    """Columns holding pseudonyms or ciphertexts: high-entropy, so no dictionary and no min/max statistics."""
    out = [p.name for p in plans if p.policy == "pseudonymise"]
    return out + [p.name + SEALED_SUFFIX for p in plans if p.sealed]


def comparable_columns(plans: list[ColumnPlan], ds: Dataset) -> list[str]:
    """Warm columns that are a function of the hot row (so equal rows give equal values): what MERGE compares
    when a re-read row has the same watermark as warm's. Leaves out the key and watermark (equal by then) and
    randomised seals (v1: a fresh IV each time); a change seen only in those is not told apart."""
    skip = {*ds.primary_key, ds.watermark}
    out = [p.name for p in plans if p.policy != "drop" and p.name not in skip]
    return out + [p.name + SEALED_SUFFIX for p in plans if p.sealed and p.policy == "pseudonymise"]


def dense_columns(ds: Dataset) -> list[str]:
    """Columns with nearly every value distinct (the key, the watermark): written without a Parquet dictionary."""
    return list(dict.fromkeys([*ds.primary_key, ds.watermark]))


def stale_keys(ds: Dataset, plans: list[ColumnPlan], data: pa.Table, keys: Keys) -> pa.Table | None:
    """The warm primary key of every row of ``data`` as promoted under each retired pseudonym key: where warm may
    still hold these people after a key rotation (rows promoted before it keep their old pseudonyms). MERGE deletes
    those rows in the commit that inserts the row under the current key (:meth:`~lifecycle.warm.WarmTable.merge`),
    so a person is never held twice. None — the plain MERGE — when no key column is pseudonymised or no other key
    was retired."""
    plan = {p.name: p for p in plans}
    pk = list(ds.primary_key)
    if data.num_rows == 0 or not any(k in plan and plan[k].policy == "pseudonymise" for k in pk):
        return None
    retired = [k for k in dict.fromkeys(keys.retired_pseudonym_keys) if k != keys.pseudonym_key]
    if not retired:
        return None
    parts = []
    for old in retired:
        cols: dict[str, pa.Array | pa.ChunkedArray] = {}
        for k in pk:
            p = plan.get(k)
            col = data.column(k)
            if p is None or p.policy == "keep":
                cols[k] = col
            elif p.policy == "pseudonymise":
                cols[k] = pseudonymise(col, old)
            elif p.policy == "generalise" and p.column is not None and p.column.generalise is not None:
                cols[k] = generalise(col, p.column.generalise)
            else:  # a dropped key column: warm has no key to MERGE on in the first place
                return None
        parts.append(pa.table(cols))
    return pa.concat_tables(parts)


def refuse_undeclared_identifiers(ds_name: str, plans: list[ColumnPlan], data: pa.Table) -> None:
    """A hot column nobody declared goes to warm as it is (``on_new_column: add``) — unless it holds personnummer:
    then the batch stops before anything is written. Whole values are checked vectorised; free text only where a
    digit pattern could be one (counts only in the message, never a value)."""
    from zones.personnummer import find_personnummer, valid_mask

    for p in plans:
        if p.column is not None or p.name not in data.column_names:
            continue
        raw_type = data.column(p.name).type
        col = _as_text(data.column(p.name))
        if col is None:
            continue
        whole = int(pc.sum(valid_mask(col)).as_py() or 0)
        if not (pa.types.is_string(raw_type) or pa.types.is_large_string(raw_type)):
            # Numbers: date-coded ids (a date, then a serial) pass the check digit about one time in ten. Of the
            # values that could be personnummer (date and serial fine), a column of them has nearly all valid, so
            # numbers count from a quarter up; only shorter ones (10 digits) are searched further. Text is held
            # to every value.
            if whole and whole * 4 < int(pc.sum(valid_mask(col, check_digit=False)).as_py() or 0):
                whole = 0
            col = col.filter(pc.invert(pc.fill_null(pc.match_substring_regex(col, r"^[0-9]{12}$"), False)))
        maybe = col.filter(pc.fill_null(pc.match_substring_regex(col, r"\d{6}[-+]?\d{4}"), False))
        inside = sum(1 for v in maybe.to_pylist() if v and find_personnummer(v)) if not whole else 0
        if whole or inside:
            raise SchemaChangeError(
                f"hot column {p.name!r} of dataset {ds_name!r} is not declared in zones.yaml and "
                f"{whole or inside} value(s) in this batch {'are' if whole else 'contain'} personnummer: warm "
                f"never takes a raw identifier, so nothing of this batch was written. Declare datasets.{ds_name}."
                f"columns.{p.name} with its personal-data class and warm policy (pseudonymise or drop), or set "
                f"datasets.{ds_name}.on_new_column: ignore")


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """The column as text the personnummer checks can read: integers and whole decimals or floats as digits
    (a NUMERIC(12) or double column of identity numbers is as raw as a text one); None for other types."""
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col
    if pa.types.is_floating(t):
        whole = pc.fill_null(pc.equal(pc.floor(col), col), False)
        col = pc.if_else(pc.and_(whole, pc.less(pc.abs(col), 1e15)), col, None)
        t = pa.int64()
        col = pc.cast(col, t)
    if pa.types.is_decimal(t) and t.scale > 0:
        col = pc.if_else(pc.equal(pc.floor(col), col), col, None)
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        text = pc.cast(col, pa.string())
        return pc.replace_substring_regex(text, r"\.0+$", "") if pa.types.is_decimal(t) else text
    return None


def to_warm(ds_name: str, ds: Dataset, plans: list[ColumnPlan], data: pa.Table, keys: Keys,
            batch_id: str) -> pa.Table:
    """Apply the warm policy of every column to a (gate-passed) hot batch."""
    refuse_undeclared_identifiers(ds_name, plans, data)
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    for p in plans:
        col = data.column(p.name)
        if p.policy == "keep":
            out[p.name] = col
        elif p.policy == "pseudonymise":
            if p.sealed:  # both need the canonical text: make it once (identity for strings, a cast otherwise)
                col = canonical_text(col)
            out[p.name] = pseudonymise(col, keys.pseudonym_key)
        elif p.policy == "generalise":
            assert p.column is not None and p.column.generalise is not None
            out[p.name] = generalise(col, p.column.generalise)
        if p.sealed:
            assert keys.seal_key is not None
            if p.policy == "pseudonymise":  # SIV: the pseudonym is IV and tag, sealing is one bulk AES pass
                out[p.name + SEALED_SUFFIX] = seal_siv(col, out[p.name], keys.seal_key, aad=seal_aad(ds_name, p.name))
            else:
                out[p.name + SEALED_SUFFIX] = seal(col, keys.seal_key, aad=seal_aad(ds_name, p.name))
    n = data.num_rows
    out["_dz_batch"] = constant(batch_id, n)
    out["_dz_key_id"] = constant(keys.pseudonym_key_id, n)
    if ds.partition_by != "none":
        out["_dz_period"] = period_of(data.column(ds.business_date), ds.partition_by)
    return pa.table(out)
