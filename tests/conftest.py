"""Shared fixtures: real PostgreSQL (a throwaway schema per test), SQLite in tmp_path, keys from the environment."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parents[1]
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TEST_NUMBERS = REPO.parent / "shared" / "data" / "skatteverket-testpersonnummer.txt"
PSEUDONYM_KEY = secrets.token_hex(32)
SEAL_KEY = secrets.token_hex(32)


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAZONES_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.setenv("DATAZONES_SEAL_KEY", SEAL_KEY)
    for k in [k for k in __import__("os").environ if k.startswith("DATAZONES__")]:
        monkeypatch.delenv(k)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema; the URL's search_path points at it. Dropped afterwards."""
    name = f"dz_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(PG_BASE)
    with eng.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        with eng.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        eng.dispose()


def pg_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


TEST_DECISION = "(test decision 2026:1)"


def write_project(folder: Path, *, hot_url: str | None = None, ledger_url: str | None = None,
                  datasets: list[str] | None = None, edit: Callable[[dict[str, Any]], None] | None = None,
                  cited: bool = True) -> Path:
    """Copy the example zones.yaml into ``folder`` with test storage locations; returns its path. ``cited``
    turns the example's placeholder disposal bases into a cited (test) decision, so disposal can run."""
    raw = yaml.safe_load((REPO / "zones.yaml").read_text(encoding="utf-8"))
    for ds in raw["datasets"].values():
        cold = ds["retention"]["cold"]
        if cited and "placeholder" in str(cold.get("basis", "")):
            cold["basis"] = cold["basis"].replace("(placeholder)", TEST_DECISION)
    if hot_url:
        raw["hot"] = {"url": hot_url}
    if ledger_url:
        raw["ledger"] = {"url": ledger_url}
    if datasets:
        raw["datasets"] = {k: v for k, v in raw["datasets"].items() if k in datasets}
    if edit:
        edit(raw)
    path = folder / "zones.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Hot store + ledger on SQLite (embedded default) or on the real PostgreSQL."""
    if request.param == "sqlite":
        yield {"name": "sqlite", "hot": f"sqlite:///{tmp_path}/hot.db", "ledger": f"sqlite:///{tmp_path}/ledger.db"}
    else:
        schema = request.getfixturevalue("pg_schema")
        yield {"name": "postgresql", "hot": pg_url(schema), "ledger": pg_url(schema), "schema": schema}
