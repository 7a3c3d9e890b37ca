"""Pseudonym key rotation with a pseudonymised primary key (``individ.individ_id``): warm MERGEs by that key, so
after a rotation a changed person's new pseudonym must replace the row stored under the old one — never sit next
to it. Real promote, real Delta, SQLite and PostgreSQL hot stores."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from lifecycle import demo
from lifecycle.ledger import Ledger
from lifecycle.promote import _ts, promote
from lifecycle.protect import Keys, load_keys, open_sealed
from lifecycle.transform import plan_columns, stale_keys
from lifecycle.warm import STALE_MARKER, WarmTable
from tests.conftest import PSEUDONYM_KEY, REPO, SEAL_KEY
from tests.helpers import hot_rows, text
from tests.test_promote import AS_OF, seeded_project
from zones.config import Project
from zones.hot import make_engine, reflect

DATASET = "individ"
K1 = PSEUDONYM_KEY  # what the conftest puts in the environment: the key before any rotation
K2, K3 = secrets.token_hex(32), secrets.token_hex(32)


def keys(current: str, *retired: str) -> Keys:
    """Keys the documented way: the new key in DATAZONES_PSEUDONYM_KEY, old ones in ..._KEYS_RETIRED."""
    return load_keys({"DATAZONES_PSEUDONYM_KEY": current, "DATAZONES_PSEUDONYM_KEYS_RETIRED": ",".join(retired),
                      "DATAZONES_SEAL_KEY": SEAL_KEY}, need_seal=True)


def pseud(key_hex: str, value: Any) -> str:
    return hmac.new(key_hex.encode(), str(text(value)).encode(), hashlib.sha256).hexdigest()


def churn(project: Project, days: int, fraction: float = 0.05) -> None:
    eng = make_engine(project.hot_url)
    try:
        changed = demo.churn(eng, as_of=AS_OF + timedelta(days=days), seed=days, fraction=fraction)
    finally:
        eng.dispose()
    assert changed.get(DATASET, 0) > 0


def check(project: Project, all_keys: list[str], latest: Keys) -> dict[Any, str]:
    """Warm holds exactly one row per hot person, at the person's latest version, its key and personnummer
    pseudonymised under the key its ``_dz_key_id`` names; sealed originals open and prove. Returns person ->
    the hex key the person is stored under."""
    hot = hot_rows(project, DATASET)
    warm = WarmTable(project.warm_table_uri(DATASET)).to_arrow()
    assert STALE_MARKER not in warm.column_names
    assert warm.num_rows == hot.num_rows, f"hot {hot.num_rows} vs warm {warm.num_rows}"
    by_id = {k: keys(k).pseudonym_key_id for k in all_keys}
    key_of = {v: k for k, v in by_id.items()}
    people = {r["individ_id"]: r for r in hot.to_pylist()}
    lookup = {k: {pseud(k, i): i for i in people} for k in all_keys}
    stored: dict[Any, str] = {}
    for row in warm.to_pylist():
        k = key_of[row["_dz_key_id"]]
        person = lookup[k].get(row["individ_id"])
        assert person is not None, "a warm key that is no hot person's pseudonym under the key its row names"
        assert person not in stored, f"person {person} is in warm twice"
        stored[person] = k
        h = people[person]
        assert row["personnummer"] == pseud(k, h["personnummer"])  # one key per row, for every column
        assert text(row["andrad"]) == text(h["andrad"]) and row["kon"] == h["kon"]  # the latest version
    assert set(stored) == set(people)
    for col in ("individ_id", "personnummer"):
        opened = open_sealed(warm.column(col + "__sealed"), latest, aad=f"datazones:{DATASET}:{col}".encode(),
                             pseudonyms=warm.column(col)).to_pylist()
        ids = [lookup[key_of[kid]][p] for kid, p in zip(warm.column("_dz_key_id").to_pylist(),
                                                        warm.column("individ_id").to_pylist(), strict=True)]
        want = [str(text(people[i][col])) for i in ids]
        assert opened == want, f"{col}: sealed originals do not restore"
    return stored


def changes(project: Project, since: int) -> dict[str, int]:
    """Change data feed rows by change type, over the commits after version ``since``."""
    cdf = DeltaTable(project.warm_table_uri(DATASET)).load_cdf(starting_version=since + 1).read_all()
    kinds = pa.table({"k": pa.array(cdf.column("_change_type").to_pylist(), pa.string())}).column("k")
    return {str(k): kinds.to_pylist().count(k) for k in set(kinds.to_pylist())}


def read_since(project: Project, lo: datetime) -> set[Any]:
    """The people a run with this window start re-reads (watermark > lo)."""
    return {r["individ_id"] for r in hot_rows(project, DATASET).to_pylist() if _ts(r["andrad"]) > lo}


def test_rotation_moves_changed_people_to_the_new_key_without_duplicates(backend: dict[str, str],
                                                                         tmp_path: Path) -> None:
    project = seeded_project(backend, tmp_path, datasets=[DATASET])
    k1 = keys(K1)
    full = promote(project, DATASET, as_of=AS_OF, keys=k1)
    assert full.mode == "full" and full.rows_written > 0
    assert set(check(project, [K1], k1).values()) == {K1}
    wm1 = Ledger(project.ledger_url).watermark(DATASET)
    assert wm1 is not None
    v1 = WarmTable(project.warm_table_uri(DATASET)).version()
    assert v1 is not None

    # rotate: K2 current, K1 retired; changed people (and the lookback window's re-reads) move to K2
    churn(project, 1)
    k2 = keys(K2, K1)
    run = promote(project, DATASET, as_of=AS_OF + timedelta(days=1, hours=1), keys=k2, batch_rows=25)
    assert run.mode == "incremental" and run.batches > 1 and run.rows_read > 0
    stored = check(project, [K1, K2], k2)
    moved = read_since(project, project.config.defaults.lookback.subtract_from(_ts(wm1)))
    assert moved and {p for p, k in stored.items() if k == K2} == moved
    unchanged = {p for p, k in stored.items() if k == K1}
    assert unchanged and len(unchanged) + len(moved) == len(stored)  # the documented mixed-key warm
    seen = changes(project, v1)
    new_people = len(stored) - full.rows_written  # churn adds a few people: inserted, nothing to delete
    assert seen.get("delete", 0) == len(moved) - new_people and seen.get("insert", 0) == len(moved)
    assert "update_postimage" not in seen  # a move is a delete under the old key + an insert under the new

    # the same rotation again: people already under K2 are updated in place, K1 rows move
    churn(project, 2)
    promote(project, DATASET, as_of=AS_OF + timedelta(days=2, hours=1), keys=k2, batch_rows=25)
    check(project, [K1, K2], k2)

    # a second rotation with two retired keys: rows under K1 and under K2 both move to K3
    churn(project, 3)
    k3 = keys(K3, K2, K1)
    promote(project, DATASET, as_of=AS_OF + timedelta(days=3, hours=1), keys=k3)
    stored = check(project, [K1, K2, K3], k3)
    assert K1 in stored.values() and K3 in stored.values()  # unchanged people keep their old pseudonyms
    again = promote(project, DATASET, as_of=AS_OF + timedelta(days=3, hours=1), keys=k3)
    assert again.mode == "noop"
    assert Ledger(project.ledger_url).verify() == []


def test_crash_after_the_rotation_commit_is_repaired_without_duplicates(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = seeded_project(backend, tmp_path, datasets=[DATASET])
    promote(project, DATASET, as_of=AS_OF, keys=keys(K1))
    churn(project, 1, fraction=0.1)
    as_of = (AS_OF + timedelta(days=1, hours=1)).isoformat()
    env = {k: v for k, v in os.environ.items() if k != "DATAZONES_FAULT"}
    env.update(DATAZONES_PSEUDONYM_KEY=K2, DATAZONES_PSEUDONYM_KEYS_RETIRED=K1, DATAZONES_SEAL_KEY=SEAL_KEY)

    def run(fault: str | None) -> subprocess.CompletedProcess[str]:
        e = dict(env, DATAZONES_FAULT=fault) if fault else env
        return subprocess.run([sys.executable, "-m", "tests.fault_runner", str(project.file), DATASET, as_of, "20"],
                              cwd=REPO, env=e, capture_output=True, text=True, timeout=300)

    crashed = run("after_delta_commit:2")  # the second page's MERGE is in Delta, its ledger batch is not
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    rerun = run(None)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rerun.stdout.split()[-1] == "1"  # one batch recovered
    check(project, [K1, K2], keys(K2, K1))


def test_stale_keys_only_when_a_key_column_is_pseudonymised_and_a_key_was_retired(tmp_path: Path) -> None:
    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    project = seeded_project(backend, tmp_path, datasets=[DATASET, "arende"])
    eng = make_engine(project.hot_url)
    try:
        plans = {n: plan_columns(n, project.dataset(n), reflect(eng, project.dataset(n).table, None))
                 for n in (DATASET, "arende")}
    finally:
        eng.dispose()
    data = hot_rows(project, DATASET).slice(0, 3)
    ds = project.dataset(DATASET)
    assert stale_keys(ds, plans[DATASET], data, keys(K2)) is None  # no rotation: the plain MERGE
    assert stale_keys(ds, plans[DATASET], data, keys(K2, K2)) is None  # "retired" = current: nothing stale
    got = stale_keys(ds, plans[DATASET], data, keys(K3, K1, K2, K1))
    assert got is not None and got.column_names == ["individ_id"]
    ids = data.column("individ_id").to_pylist()
    assert got.column("individ_id").to_pylist() == [pseud(K1, i) for i in ids] + [pseud(K2, i) for i in ids]
    arende = hot_rows(project, "arende").slice(0, 3)  # key arende_id is kept as is: nothing moves on rotation
    assert stale_keys(project.dataset("arende"), plans["arende"], arende, keys(K2, K1)) is None


def test_marker_column_never_reaches_warm_even_with_a_schema_merge(tmp_path: Path) -> None:
    warm = WarmTable(str(tmp_path / "t"))
    base = pa.table({"k": ["a", "b", "c"], "w": [1, 1, 1], "v": ["x", "y", "z"]})
    warm.append(base, partition_by=None, app_id="t", seq=1, meta={})
    v0 = warm.version()
    assert v0 is not None
    src = pa.table({"k": ["A", "B", "d"], "w": [2, 0, 2], "v": ["X", "Y", "D"], "extra": [1, 2, 3]})
    warm.merge(src, keys=["k"], newer="w", app_id="t", seq=2, meta={}, merge_schema=True,
               stale=pa.table({"k": ["a", "b", "gone"]}))
    out = warm.to_arrow().sort_by("k")
    assert out.column_names == ["k", "w", "v", "extra"]  # the new column merged, the marker not
    assert out.column("k").to_pylist() == ["A", "B", "c", "d"]
    assert out.column("v").to_pylist() == ["X", "Y", "z", "D"]
    assert warm.committed("t") == 2 and warm.version() == v0 + 1  # one commit


def test_purge_finds_rows_warm_stores_under_a_retired_key(tmp_path: Path) -> None:
    """Purge deletes a hot row only when warm holds its identical version; warm holds people promoted before a
    rotation under the old key. Looking under the current key alone kept them in hot past their retention."""
    from lifecycle.purge import purge

    backend = {"hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}

    def edit(raw: dict[str, Any]) -> None:
        raw["datasets"][DATASET]["retention"]["hot"] = {"keep": "P1D"}

    project = seeded_project(backend, tmp_path, datasets=[DATASET], edit=edit)
    promote(project, DATASET, as_of=AS_OF, keys=keys(K1))
    later = AS_OF + timedelta(days=30)
    before = purge(project, DATASET, as_of=later, keys=keys(K1))
    assert before.checks["purgeable"] == before.rows_read > 0
    after = purge(project, DATASET, as_of=later, keys=keys(K2, K1))  # rotated: K1 retired, nothing re-promoted
    assert after.checks["purgeable"] == before.checks["purgeable"] and after.checks["not_verified_elsewhere"] == 0
    done = purge(project, DATASET, as_of=later, execute=True, keys=keys(K2, K1))
    assert done.rows_deleted == before.rows_read and hot_rows(project, DATASET).num_rows == 0
    assert purge(project, DATASET, as_of=later, keys=keys(K2)).rows_read == 0
