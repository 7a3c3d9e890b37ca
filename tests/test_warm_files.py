"""The Arrow-written append path (lifecycle/warm_files.py) makes the same Delta table delta-rs's writer makes:
same rows, same partitions, statistics that agree with delta-rs's wherever both give one, app transactions."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lifecycle.warm import TABLE_CONFIG, WarmTable, _writer_props

OPAQUE = ["pnr", "pnr__sealed"]


def batch(lo: int, n: int) -> pa.Table:
    ids = list(range(lo, lo + n))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "small": pa.array([None if i % 7 == 0 else i % 1000 for i in ids], pa.int32()),
        "day": pa.array([date(2013, 1, 1) + timedelta(days=i % 4000) for i in ids], pa.date32()),
        "at": pa.array([datetime(2014, 1, 1, tzinfo=UTC) + timedelta(seconds=i * 37, microseconds=i % 999)
                        for i in ids], pa.timestamp("us", tz="UTC")),
        "status": pa.array([["PLANERAD", "UTBETALD", None][i % 3] for i in ids], pa.string()),
        "note": pa.array(["åäö " * (i % 20) for i in ids], pa.string()),  # up to 80 characters
        "amount": pa.array([i * 0.5 for i in ids], pa.float64()),
        "pnr": pa.array([f"{i:064x}" for i in ids], pa.string()),
        "pnr__sealed": pa.array([bytes([2]) + i.to_bytes(8, "big") for i in ids], pa.binary()),
        "_dz_period": pa.array([2013 + (i % 4000) // 365 for i in ids], pa.int32()),
    })


def per_partition(dt: DeltaTable) -> dict[str, dict[str, Any]]:
    """numRecords, nullCount sums and min/max bounds per partition, from the log's add actions."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"rows": 0, "nulls": defaultdict(int), "min": {}, "max": {}})
    log = Path(dt.table_uri.removeprefix("file://")) / "_delta_log"
    for entry in sorted(log.glob("*.json")):
        for line in entry.read_text().splitlines():
            add = json.loads(line).get("add")
            if not add:
                continue
            part, st = add["partitionValues"]["_dz_period"], json.loads(add["stats"])
            agg = out[part]
            agg["rows"] += st["numRecords"]
            for c, v in st.get("nullCount", {}).items():
                agg["nulls"][c] += v
            for c, v in st.get("minValues", {}).items():
                agg["min"][c] = min(agg["min"].get(c, v), v)
            for c, v in st.get("maxValues", {}).items():
                agg["max"][c] = max(agg["max"].get(c, v), v)
    return out


def _t(v: Any) -> Any:
    return datetime.fromisoformat(v.replace("Z", "+00:00")) if isinstance(v, str) and v.endswith("Z") else v


def test_arrow_written_append_matches_delta_rs(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    warm = WarmTable(str(ours), opaque_columns=OPAQUE)
    for seq, lo in enumerate((0, 30_000, 60_000), start=1):
        data = batch(lo, 30_000)
        warm.append(data, partition_by=["_dz_period"], app_id="app", seq=seq, meta={"datazones.seq": str(seq)})
        write_deltalake(str(theirs), data, mode="append", partition_by=["_dz_period"], configuration=TABLE_CONFIG,
                        writer_properties=_writer_props(OPAQUE))
    a, b = DeltaTable(str(ours)), DeltaTable(str(theirs))
    assert a.version() == 2 and a.transaction_version("app") == 3 and warm.committed("app") == 3
    assert a.metadata().configuration == b.metadata().configuration
    assert a.metadata().partition_columns == ["_dz_period"]
    assert a.protocol() == b.protocol() and a.schema() == b.schema()
    rows_a = a.to_pyarrow_table().sort_by("id")
    assert rows_a.equals(b.to_pyarrow_table().sort_by("id").select(rows_a.column_names))
    assert rows_a.num_rows == 90_000

    pa_, pb = per_partition(a), per_partition(b)
    assert pa_.keys() == pb.keys() and len(pa_) > 5
    compared = set()
    for part, x in pa_.items():
        y = pb[part]
        assert x["rows"] == y["rows"]
        assert dict(x["nulls"]) == {c: n for c, n in y["nulls"].items() if c not in OPAQUE}
        for side in ("min", "max"):
            assert not set(x[side]) & set(OPAQUE)
            for c, v in x[side].items():  # every bound we give agrees with delta-rs's (when it gives one)
                if c not in y[side]:
                    continue
                if c == "at" and side == "max":  # delta-rs floors to the millisecond (readers add 1 ms back);
                    assert timedelta(0) <= _t(v) - _t(y[side][c]) <= timedelta(milliseconds=1)  # we round up
                else:
                    assert _t(v) == _t(y[side][c]), (part, side, c)
                compared.add(c)
        assert {"id", "small", "day", "at", "status"} <= set(x["min"]) and "amount" not in x["min"]
    assert {"id", "small", "day", "at", "status"} <= compared


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamp_bounds_are_rounded_outward_to_milliseconds_in_every_unit(unit: str) -> None:
    from lifecycle.warm_files import stats

    lo, hi = datetime(1969, 12, 31, 23, 59, 58, 1500, tzinfo=UTC), datetime(2020, 1, 1, 0, 0, 1, 999_001, tzinfo=UTC)
    t = pa.table({"at": pa.array([lo, hi], pa.timestamp("us", "UTC")).cast(pa.timestamp(unit, "UTC"), safe=False)})
    st = json.loads(stats(t, set()))
    if unit in ("s", "ms"):  # no finer digits: the bounds are the stored values themselves
        stored = [v.as_py() for v in t.column("at")]
        want = [v.strftime("%Y-%m-%dT%H:%M:%S") + (f".{v.microsecond // 1000:03d}" if v.microsecond else "") + "Z"
                for v in stored]
        assert [st["minValues"]["at"], st["maxValues"]["at"]] == want
        assert want[1] == ("2020-01-01T00:00:01Z" if unit == "s" else "2020-01-01T00:00:01.999Z")
    else:  # floor of 58.0015 s before the epoch; ceiling of 1.999001 s
        assert st["minValues"]["at"] == "1969-12-31T23:59:58.001Z"
        assert st["maxValues"]["at"] == "2020-01-01T00:00:02Z"


@pytest.mark.parametrize("uri", ["s3://bucket/warm/t", "memory://x"])
def test_only_local_paths_take_the_arrow_written_path(uri: str) -> None:
    from lifecycle.warm_files import local_path

    assert local_path(uri) is None and local_path("/data/warm/t") == "/data/warm/t"
    assert local_path("file:///data/warm/t") == "/data/warm/t"


def test_first_append_creates_an_unpartitioned_table_in_a_new_folder(tmp_path: Path) -> None:
    warm = WarmTable(str(tmp_path / "new" / "t"), opaque_columns=OPAQUE)
    data = batch(0, 1000).drop_columns(["_dz_period"])
    assert warm.append(data, partition_by=None, app_id="a", seq=1, meta={}) == 0
    assert DeltaTable(str(tmp_path / "new" / "t")).to_pyarrow_table().sort_by("id").equals(data)


def test_partition_split_slices_ordered_pages_and_filters_the_rest() -> None:
    """Pages whose period never decreases are split by zero-copy slices; any other page by filters: same parts."""
    from lifecycle.warm_files import _partitions, _sorted_runs

    ordered = batch(0, 3000).sort_by("_dz_period")
    shuffled = ordered.take(pa.array(np.random.default_rng(1).permutation(ordered.num_rows)))
    assert _sorted_runs(ordered.column("_dz_period")) is not None
    assert _sorted_runs(shuffled.column("_dz_period")) is None

    def parts(t: pa.Table) -> dict[str, pa.Table]:
        return {v["_dz_period"]: p.sort_by("id") for v, p in _partitions(t, ["_dz_period"])}

    a, b = parts(ordered), parts(shuffled)
    assert a.keys() == b.keys() and len(a) > 5
    assert all(a[k].equals(b[k]) and "_dz_period" not in a[k].column_names for k in a)
    assert sum(p.num_rows for p in a.values()) == ordered.num_rows
    with_null = ordered.set_column(ordered.schema.get_field_index("_dz_period"), "_dz_period",
                                   pa.array([None, *ordered.column("_dz_period").to_pylist()[1:]], pa.int32()))
    assert _sorted_runs(with_null.column("_dz_period")) is None
    assert None in {v["_dz_period"] for v, _ in _partitions(with_null, ["_dz_period"])}


def test_dense_columns_skip_the_dictionary_but_keep_statistics(tmp_path: Path) -> None:
    """The key and the watermark are written without a dictionary (nearly every value is distinct) and still get
    Parquet and Delta min/max statistics (MERGE prunes files by the key); other columns keep their dictionary."""
    import pyarrow.parquet as pq

    warm = WarmTable(str(tmp_path / "t"), opaque_columns=OPAQUE, dense_columns=["id", "at"])
    warm.append(batch(0, 20_000), partition_by=None, app_id="app", seq=1, meta={})
    files = list((tmp_path / "t").glob("*.parquet"))
    assert files
    for f in files:
        meta = pq.ParquetFile(f).metadata
        cols = {meta.schema.column(i).name: meta.row_group(0).column(i) for i in range(meta.num_columns)}
        for name in ("id", "at"):
            assert not any("DICTIONARY" in e for e in cols[name].encodings), (name, cols[name].encodings)
            assert cols[name].statistics is not None and cols[name].statistics.has_min_max
        assert any("DICTIONARY" in e for e in cols["status"].encodings)
        assert cols["pnr"].statistics is None or not cols["pnr"].statistics.has_min_max
    stats = per_partition_free(DeltaTable(str(tmp_path / "t")))
    assert stats["min"]["id"] == 0 and stats["max"]["id"] == 19_999
    props = _writer_props(OPAQUE, ["id", "at"])
    assert props.column_properties["id"].dictionary_enabled is False
    assert props.column_properties["id"].statistics_enabled != "NONE"
    assert props.column_properties["pnr"].statistics_enabled == "NONE"


def per_partition_free(dt: DeltaTable) -> dict[str, Any]:
    """min/max bounds over all add actions of an unpartitioned table."""
    out: dict[str, Any] = {"min": {}, "max": {}}
    log = Path(dt.table_uri.removeprefix("file://")) / "_delta_log"
    for entry in sorted(log.glob("*.json")):
        for line in entry.read_text().splitlines():
            st = json.loads(json.loads(line).get("add", {}).get("stats") or "{}")
            for c, v in st.get("minValues", {}).items():
                out["min"][c] = min(out["min"].get(c, v), v)
            for c, v in st.get("maxValues", {}).items():
                out["max"][c] = max(out["max"].get(c, v), v)
    return out


def test_opaque_columns_are_delta_length_encoded_on_both_write_paths_and_read_back_everywhere(tmp_path: Path) -> None:
    """Pseudonyms and ciphertexts are written DELTA_LENGTH_BYTE_ARRAY by our Arrow path and by delta-rs's writer
    (object stores); the files read back to the same values in pyarrow, delta-rs and DuckDB."""
    import duckdb
    import pyarrow.parquet as pq

    data = batch(0, 5_000)
    ours = WarmTable(str(tmp_path / "ours"), opaque_columns=OPAQUE)
    ours.append(data, partition_by=None, app_id="app", seq=1, meta={})
    write_deltalake(str(tmp_path / "rs"), data, writer_properties=_writer_props(OPAQUE, ["id"]),
                    configuration=TABLE_CONFIG)
    for folder in ("ours", "rs"):
        files = sorted((tmp_path / folder).glob("*.parquet"))
        assert files
        for f in files:
            meta = pq.ParquetFile(f).metadata
            enc = {meta.schema.column(i).name: meta.row_group(0).column(i).encodings for i in range(meta.num_columns)}
            for c in OPAQUE:
                assert "DELTA_LENGTH_BYTE_ARRAY" in enc[c], (folder, c, enc[c])
        want = data.sort_by("id").select(OPAQUE).to_pylist()
        assert DeltaTable(str(tmp_path / folder)).to_pyarrow_table().sort_by("id").select(OPAQUE).to_pylist() == want
        got = duckdb.sql(f"SELECT pnr, pnr__sealed FROM read_parquet('{tmp_path / folder}/*.parquet') ORDER BY id")
        assert got.fetchall() == [(r["pnr"], r["pnr__sealed"]) for r in want]


def test_keys_beyond_the_basic_plane_keep_exact_statistics_and_merge_in_place(tmp_path: Path) -> None:
    """Statistics of keys outside the Basic Multilingual Plane (CJK Extension B in a name, U+10FFFF) are read
    back by delta-rs exactly as written, so MERGE's file pruning finds their rows: an update, never a duplicate.
    (JSON's escaped surrogate pairs were decoded 0x10000 too low by delta-rs.)"""
    keys = ["a", "\U00020bb7野家", "\U0002a6d6", "\U0001f600", "é", "\U0010ffff", "z"]
    w = WarmTable(str(tmp_path / "t"))
    for seq, k in enumerate(keys, start=1):  # one file per key: pruning decides which files MERGE reads
        w.append(pa.table({"k": [k], "v": [0]}), partition_by=None, app_id="app", seq=seq, meta={})
    adds = pa.table(DeltaTable(str(tmp_path / "t")).get_add_actions(flatten=True)).to_pylist()
    assert sorted((r["min.k"], r["max.k"]) for r in adds) == sorted((k, k) for k in keys)
    w.refresh()
    done = w.merge(pa.table({"k": keys, "v": [1] * len(keys)}), keys=["k"], newer="v", app_id="app",
                   seq=len(keys) + 1, meta={})
    assert done["num_target_rows_inserted"] == 0
    got = DeltaTable(str(tmp_path / "t")).to_pyarrow_table().sort_by("k").to_pylist()
    assert got == sorted(({"k": k, "v": 1} for k in keys), key=lambda r: r["k"])
