"""The quarantine zone: rows a gate rejected, kept with the reason and batch id — and nothing raw.

Quarantine lives beside warm (``<warm>/_quarantine/<dataset>``), so it obeys warm's rule: no raw direct
identifier. A quarantined row is stored as its key (pseudonymised where the key column is), the reason (check
names only), the batch id, ``_dz_version`` (a keyed hash of the row's content: each row version is quarantined
once, however often the lookback re-reads it, a pseudonym-key rotation included when the old key is listed as
retired) and ``_dz_row``: the whole original row as JSON, sealed (AEAD)
under the seal key. A release (re-validation and promotion) unseals it; stewards see counts, reasons and keys.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lifecycle.protect import Keys, canonical_text, pseudonymise, seal
from lifecycle.transform import ColumnPlan
from lifecycle.warm import WarmTable
from zones.errors import MissingSecretError
from zones.hot import RAW_COLUMN
from zones.model import Dataset


def quarantine_app_id(dataset: str) -> str:
    return f"datazones/quarantine/{dataset}"


def quarantine_rows(qwarm: WarmTable, dataset: str, ds: Dataset, plans: list[ColumnPlan], rows: pa.Table,
                    reasons: pa.Array, keys: Keys, batch_id: str, seq: int) -> int:
    if keys.seal_key is None:
        raise MissingSecretError("rows failed the gate and must be quarantined sealed, but DATAZONES_SEAL_KEY is "
                                 "not set; set it (the archive function's key) and rerun — nothing was committed")
    if qwarm.committed(quarantine_app_id(dataset)) >= seq:
        return 0
    raw = rows.column(RAW_COLUMN).to_pylist() if RAW_COLUMN in rows.column_names else [None] * rows.num_rows
    payload = pa.array([r if r is not None else json.dumps({k: v for k, v in row.items() if k != RAW_COLUMN},
                                                           default=str, ensure_ascii=False)
                        for r, row in zip(raw, rows.to_pylist(), strict=True)], pa.string())
    versions = pseudonymise(payload, keys.pseudonym_key)  # the row's whole content, keyed: no value stored
    held = qwarm.schema() if qwarm.exists() else None
    if held is not None and "_dz_version" in held.names:  # re-read inside the lookback: quarantined already
        seen = qwarm.to_arrow(columns=["_dz_version"]).column("_dz_version")
        new = pc.invert(pc.is_in(versions, seen))
        for retired in keys.retired_pseudonym_keys:  # versions quarantined before a pseudonym-key rotation
            if not pc.any(new).as_py():
                break
            new = pc.and_(new, pc.invert(pc.is_in(pseudonymise(payload, retired), seen)))
        if not pc.all(new).as_py():
            rows, reasons = rows.filter(new), reasons.filter(new)
            versions, payload = versions.filter(new), payload.filter(new)
            if rows.num_rows == 0:
                return 0
    policy = {p.name: p.policy for p in plans}
    out: dict[str, Any] = {}
    for k in ds.primary_key:
        col = rows.column(k)
        out[k] = pseudonymise(col, keys.pseudonym_key) if policy.get(k) == "pseudonymise" else canonical_text(col)
    n = rows.num_rows
    out["_dz_reason"] = reasons
    out["_dz_batch"] = pa.array([batch_id] * n, pa.string())
    out["_dz_seq"] = pa.array([seq] * n, pa.int64())
    out["_dz_at"] = pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC"))
    out["_dz_row"] = seal(payload, keys.seal_key, aad=f"datazones:{dataset}:_quarantine".encode())
    out["_dz_released"] = pa.array([False] * n, pa.bool_())
    out["_dz_version"] = versions
    table = pa.table(out)
    qwarm.append(table, partition_by=None, app_id=quarantine_app_id(dataset), seq=seq,
                 meta={"datazones.batch_id": batch_id}, merge_schema=True)
    return n


def remove_batch(qwarm: WarmTable, dataset: str, batch_id: str, *, seq: int) -> int:
    """Remove the quarantine rows of an abandoned batch (its rows will be re-read and re-judged)."""
    if not qwarm.exists():
        return 0
    t = qwarm.to_arrow(columns=["_dz_batch"])
    if t.num_rows == 0 or not pc.any(pc.equal(t.column("_dz_batch"), batch_id)).as_py():
        return 0
    m = qwarm.delete(f"_dz_batch = '{batch_id}'", app_id=quarantine_app_id(dataset) + "/cleanup", seq=seq,
                     meta={"datazones.abandoned_batch": batch_id})
    return int(m.get("num_deleted_rows", 0))
