"""Scanner: no valid personnummer (10/12-digit forms) in warm files, Delta logs, quarantine, ledger, logs, reports."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from lifecycle import demo
from lifecycle.promote import promote
from tests.conftest import write_project
from zones.config import load
from zones.hot import make_engine
from zones.personnummer import find_personnummer

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


def _texts_of_parquet(path: Path) -> list[str]:
    t = pq.read_table(path)
    out = []
    for col in t.columns:
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            out.extend(v.decode("latin-1") for v in col.to_pylist() if v is not None)
        else:
            out.extend(str(v) for v in col.to_pylist() if v is not None)
    return out


def scan_tree(root: Path) -> list[tuple[str, str]]:
    hits = []
    for f in root.rglob("*"):
        if not f.is_file():
            continue
        texts = _texts_of_parquet(f) if f.suffix == ".parquet" else [f.read_bytes().decode("latin-1")]
        for text in texts:
            hits.extend((str(f), h) for h in find_personnummer(text))
    return hits


def test_scanner_finds_a_planted_number(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": ["note: 19811218-9876 called", "ok"]}), tmp_path / "plant.parquet")
    (tmp_path / "log.txt").write_text("person 811218-9876 and 198112189876")
    hits = {h for _, h in scan_tree(tmp_path)}
    assert hits == {"198112189876"}


def test_no_raw_personnummer_anywhere_after_promotion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_project(tmp_path, hot_url=f"sqlite:///{tmp_path}/hot.db", ledger_url=f"sqlite:///{tmp_path}/l.db")
    project = load(path, env={})
    eng = make_engine(project.hot_url)
    demo.create_schema(eng)
    demo.seed(eng, scale=1, as_of=AS_OF, seed=11)
    with eng.begin() as c:  # one bad row in individ so the quarantine path (and its logs) is exercised
        c.execute(sa.text("UPDATE individ SET fodelsear = 'nittonhundra' WHERE individ_id = "
                          "(SELECT min(individ_id) FROM individ)"))
        raw = c.execute(sa.text("SELECT personnummer FROM individ")).scalars().all()
    eng.dispose()
    assert len(raw) > 500 and all(find_personnummer(p) == [p] for p in raw[:50])  # the data really has them
    caplog.set_level(logging.DEBUG)
    reports = [promote(project, name, as_of=AS_OF) for name in project.config.datasets]
    assert sum(r.rows_quarantined for r in reports) >= 1
    warm_root = Path(project.zone_uri("warm"))
    assert list(warm_root.rglob("*.parquet")) and list(warm_root.rglob("_delta_log/*.json"))
    assert scan_tree(warm_root) == []  # data files, Delta logs (stats!), quarantine
    assert find_personnummer(json.dumps([r.to_dict() for r in reports], default=str)) == []
    assert find_personnummer(caplog.text) == []
    ledger_text = "\n".join(str(r) for t in ("dz_events", "dz_batches")
                            for r in sa.create_engine(project.ledger_url).connect().execute(
                                sa.text(f"SELECT * FROM {t}")).all())
    assert "individ" in ledger_text and find_personnummer(ledger_text) == []
