"""Test helpers: an independent, row-at-a-time reference of what warm must hold for each hot row."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lifecycle.protect import Keys, open_sealed
from lifecycle.transform import SEALED_SUFFIX, icd10_chapter, seal_aad
from lifecycle.warm import WarmTable
from tests.conftest import PSEUDONYM_KEY, SEAL_KEY
from zones.config import Project
from zones.hot import make_engine, reflect

FAR = datetime(2999, 1, 1, tzinfo=UTC)


def text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    return str(v)


def hot_rows(project: Project, dataset: str) -> pa.Table:
    from zones.hot import HotReader

    ds = project.dataset(dataset)
    eng = make_engine(project.hot_url)
    try:
        hot = reflect(eng, ds.table, ds.schema_ or project.config.hot.schema_)
        r = HotReader(eng, hot, key=list(ds.primary_key), watermark=ds.watermark)
        try:
            return r.page(hi=FAR, lo=None, after=None, limit=10**9).data
        finally:
            r.close()
    finally:
        eng.dispose()


def expected_warm(project: Project, dataset: str, hot: pa.Table) -> dict[str, tuple[Any, ...]]:
    """pk-text -> the warm values, computed per row with the standard library (not the vectorised code)."""
    ds = project.dataset(dataset)
    key = PSEUDONYM_KEY.encode()  # the HMAC key is the secret's hex text (see lifecycle.protect)
    out = {}
    for row in hot.to_pylist():
        vals: list[Any] = []
        for name in hot.column_names:
            col = ds.columns.get(name)
            v = row[name]
            policy = col.warm if col else "keep"
            if policy == "keep":
                vals.append(text(v))
            elif policy == "pseudonymise":
                vals.append(None if v is None else hmac.new(key, text(v).encode(), hashlib.sha256).hexdigest())
            elif policy == "generalise":
                assert col is not None
                vals.append(_generalise(v, col.generalise or ""))
        pk = "|".join(str(vals[hot.column_names.index(k)]) if ds.columns[k].warm == "pseudonymise"
                      else text(row[k]) or "" for k in ds.primary_key)
        out[pk] = tuple(vals)
    return out


def _generalise(v: Any, how: str) -> Any:
    if v is None:
        return None
    if how in ("year", "decade"):
        y = v.year if isinstance(v, date) else int(v)
        return str(y if how == "year" else y // 10 * 10)
    if how == "county":
        return str(v)[:2]
    if how == "icd10_chapter":
        return icd10_chapter(v)
    return v.strftime("%Y-%m")


def actual_warm(project: Project, dataset: str, hot_columns: list[str]) -> dict[str, tuple[Any, ...]]:
    """pk-text -> warm values; asserts every key appears exactly once."""
    ds = project.dataset(dataset)
    t = WarmTable(project.warm_table_uri(dataset)).to_arrow()
    names = [n for n in hot_columns if n in t.column_names]
    out: dict[str, tuple[Any, ...]] = {}
    for row in t.select(names).to_pylist():
        pk = "|".join(text(row[k]) or "" for k in ds.primary_key)
        assert pk not in out, f"key {pk} appears more than once in warm {dataset}"
        out[pk] = tuple(text(row[n]) for n in names)
    return out


def assert_warm_matches_hot(project: Project, dataset: str) -> int:
    """Every hot row exactly once in warm at its latest version; sealed originals restore exactly."""
    hot = hot_rows(project, dataset)
    ds = project.dataset(dataset)  # rows failing the contract are in quarantine, not warm
    hot = hot.filter(pc.and_(pc.is_valid(hot[ds.business_date]), pc.is_valid(hot[ds.watermark])))
    exp = expected_warm(project, dataset, hot)
    act = actual_warm(project, dataset, hot.column_names)
    assert set(act) == set(exp), f"{dataset}: {len(set(exp) - set(act))} missing, {len(set(act) - set(exp))} extra"
    diff = [k for k in exp if exp[k] != act[k]]
    assert not diff, f"{dataset}: {len(diff)} rows differ, e.g. {diff[0]}: {exp[diff[0]]} vs {act[diff[0]]}"
    ds = project.dataset(dataset)
    sealed = [n for n, c in ds.columns.items() if c.sealed and c.lossy]
    if sealed:
        t = WarmTable(project.warm_table_uri(dataset)).to_arrow()
        seal_key = bytes.fromhex(SEAL_KEY)
        hot_by_pk = dict(zip(expected_warm_keys(project, dataset, hot), hot.to_pylist(), strict=True))
        warm_pks = ["|".join(text(r[k]) or "" for k in ds.primary_key) for r in t.select(ds.primary_key).to_pylist()]
        keys = Keys(bytes.fromhex(PSEUDONYM_KEY), "test", seal_key, "test")
        for name in sealed:
            pseud = t.column(name) if name in t.column_names else None
            restored = open_sealed(t.column(name + SEALED_SUFFIX), keys, aad=seal_aad(dataset, name),
                                   pseudonyms=pseud).to_pylist()
            bad = [pk for pk, v in zip(warm_pks, restored, strict=True) if v != text(hot_by_pk[pk][name])]
            assert not bad, f"{dataset}.{name}: {len(bad)} sealed originals do not restore (e.g. key {bad[0]})"
    return len(exp)


def expected_warm_keys(project: Project, dataset: str, hot: pa.Table) -> list[str]:
    return list(expected_warm(project, dataset, hot))
