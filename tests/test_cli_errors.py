"""User errors end in a clear message and the documented exit code, never in a traceback: bad store URLs, bad
``--as-of`` times, unknown datasets and batches, environment overrides blamed on the right source, and a quarantine
release over rows the hot source still holds malformed."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import write_project
from tests.test_cli import zones

WIDE = {"COLUMNS": "400"}  # rich wraps at the terminal width: keep each message on one line


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return zones(*args, cwd=cwd, env={**WIDE, **(env or {})})


def clean_error(res: subprocess.CompletedProcess[str], code: int) -> str:
    """The stderr of a run that failed with ``code`` and no traceback."""
    assert res.returncode == code, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    return " ".join(res.stderr.split())


@pytest.mark.parametrize("store", ["hot", "ledger"])
@pytest.mark.parametrize("command", [["validate"], ["status"], ["promote", "beslut"]])
def test_a_bad_store_url_from_the_environment_is_a_configuration_error(tmp_path: Path, store: str,
                                                                       command: list[str]) -> None:
    write_project(tmp_path, datasets=["beslut"])
    msg = clean_error(run(*command, cwd=tmp_path, env={f"DATAZONES__{store.upper()}__URL": "notaurl"}), 2)
    assert f"environment DATAZONES__{store.upper()}__URL=notaurl: {store}.url: not a SQLAlchemy URL" in msg
    assert "fix:" in msg and "postgresql+psycopg://" in msg


def test_a_bad_store_url_never_shows_its_password_and_a_yaml_one_names_its_line(tmp_path: Path) -> None:
    cfg = write_project(tmp_path, datasets=["beslut"], ledger_url="foo://ann:s3cret@db.example/ledger")
    line = next(i for i, t in enumerate(cfg.read_text().splitlines(), 1) if "foo://" in t)
    msg = clean_error(run("status", cwd=tmp_path), 2)
    assert f"zones.yaml:{line}: ledger.url: no SQLAlchemy dialect and driver 'foo'" in msg
    assert "'foo://ann:***@db.example/ledger'" in msg and "s3cret" not in msg
    msg = clean_error(run("status", cwd=tmp_path, env={
        "DATAZONES__LEDGER__URL": "postgresql+psycopg://ann:s3cret@db.example:port/ledger"}), 2)
    assert "DATAZONES__LEDGER__URL=postgresql+psycopg://ann:***@db.example:port/ledger" in msg
    assert "the port is not a number" in msg and "s3cret" not in msg


@pytest.mark.parametrize("value", ["garbage", "2026-13-45"])
@pytest.mark.parametrize("command", [["promote", "beslut"], ["archive", "--all"], ["purge", "--all"],
                                     ["dispose", "plan", "--by", "ann"], ["demo", "seed"], ["demo", "churn"]])
def test_a_bad_as_of_is_a_usage_error_naming_the_accepted_form(tmp_path: Path, command: list[str],
                                                               value: str) -> None:
    write_project(tmp_path, datasets=["beslut"])
    res = run(*command, "--as-of", value, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    msg = " ".join(res.stderr.split())
    assert f"Invalid value for '--as-of': '{value}' is not a valid time" in msg
    assert "ISO-8601 time with timezone, e.g. 2026-12-05T12:00:00+00:00" in msg


def test_a_bad_review_date_of_a_hold_is_a_usage_error(tmp_path: Path) -> None:
    write_project(tmp_path, datasets=["beslut"])
    res = run("hold", "add", "--dataset", "beslut", "--reason", "r", "--by", "ann", "--review-at", "2026-02-30",
              cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "Invalid value for '--review-at'" in res.stderr and "2027-06-30" in res.stderr


@pytest.mark.parametrize("command", [
    ["quarantine", "show", "nodataset"], ["quarantine", "list", "nodataset"],
    ["quarantine", "release", "nodataset", "--batch", "b"], ["quality", "results", "nodataset"],
    ["hold", "add", "--dataset", "nodataset", "--reason", "r", "--by", "ann"], ["archive", "nodataset"]])
def test_an_unknown_dataset_is_named_with_the_declared_ones(tmp_path: Path, command: list[str]) -> None:
    write_project(tmp_path, datasets=["beslut", "utbetalning"])
    msg = clean_error(run(*command, cwd=tmp_path), 2)
    assert "unknown dataset(s) ['nodataset']; declared: beslut, utbetalning" in msg


def test_a_batch_not_in_the_quarantine_is_an_error_not_zero_of_zero(tmp_path: Path) -> None:
    write_project(tmp_path, datasets=["utbetalning"])
    for command in (["quarantine", "release", "utbetalning", "--batch", "nonexistent"],
                    ["quarantine", "show", "utbetalning", "--batch", "nonexistent"]):
        msg = clean_error(run(*command, cwd=tmp_path), 4)  # not found is terminal, like an unknown hold or plan
        assert "no batch 'nonexistent' in the quarantine of 'utbetalning' (it is empty)" in msg


def test_environment_override_errors_name_the_variable_not_a_yaml_line(tmp_path: Path) -> None:
    write_project(tmp_path, datasets=["beslut"])
    msg = clean_error(run("validate", cwd=tmp_path, env={"DATAZONES__DEFAULTS__BATCH_ROWS": "abc"}), 2)
    assert "environment DATAZONES__DEFAULTS__BATCH_ROWS=abc: defaults.batch_rows:" in msg and "zones.yaml:" not in msg
    msg = clean_error(run("validate", cwd=tmp_path, env={"DATAZONES__HOT__URLL": "x"}), 2)
    assert "environment DATAZONES__HOT__URLL=x: hot.urll: unknown key 'urll'" in msg and "did you mean 'url'" in msg
    assert "zones.yaml:" not in msg


def test_a_missing_hot_table_prints_its_fix_once(tmp_path: Path) -> None:
    write_project(tmp_path, datasets=["beslut"])  # nothing seeded: the hot table does not exist
    res = run("validate", cwd=tmp_path)
    assert res.returncode == 1 and "table 'beslut' does not exist in the hot store" in res.stdout, res.stderr[-2000:]
    assert res.stdout.count("fix:") == 1 and res.stdout.count("run `zones demo seed` for the demo") == 1
    found = json.loads(run("validate", "--json", cwd=tmp_path).stdout)
    assert [f["message"].count("fix") for f in found] == [0] and "zones demo seed" in found[0]["fix"]


def test_release_promotes_the_fixed_row_and_keeps_the_still_malformed_one(tmp_path: Path) -> None:
    """A quarantined batch where one row was fixed in hot and one still holds an impossible date (SQLite keeps
    '2026-02-30' in a DATE column): the fixed row is released, the other stays in quarantine with its reason."""
    from lifecycle.warm import WarmTable
    from zones.config import load

    write_project(tmp_path, datasets=["utbetalning"])
    now = datetime.now(UTC).replace(microsecond=0)
    assert run("demo", "seed", "--as-of", (now - timedelta(hours=1)).isoformat(), cwd=tmp_path).returncode == 0
    assert run("promote", "utbetalning", cwd=tmp_path).returncode == 0
    hot = sa.create_engine(f"sqlite:///{tmp_path}/.datazones/hot.db")
    changed = (now - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S.000000")
    with hot.begin() as c:
        brutto7 = c.execute(sa.text("SELECT brutto_sek FROM utbetalning WHERE utbetalning_id = 7")).scalar()
        c.execute(sa.text("UPDATE utbetalning SET brutto_sek = '12 000', andrad = :t WHERE utbetalning_id = 7"),
                  {"t": changed})
        c.execute(sa.text("UPDATE utbetalning SET utbetald = '2026-02-30', andrad = :t WHERE utbetalning_id = 8"),
                  {"t": changed})
    res = run("promote", "utbetalning", "--json", cwd=tmp_path)
    assert res.returncode == 0 and json.loads(res.stdout)[0]["rows_quarantined"] == 2, res.stderr[-2000:]
    [entry] = json.loads(run("quarantine", "list", "utbetalning", "--json", cwd=tmp_path).stdout)
    assert entry["open"] == 2 and entry["reasons"]["wrong_type"] == 2
    with hot.begin() as c:  # the source fixes row 7 only
        c.execute(sa.text("UPDATE utbetalning SET brutto_sek = :b WHERE utbetalning_id = 7"), {"b": brutto7})
    hot.dispose()

    res = run("quarantine", "release", "utbetalning", "--batch", entry["batch_id"], "--json", cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    rep = json.loads(res.stdout)
    assert (rep["rows"], rep["released"], rep["still_failing"], rep["gone_from_hot"]) == (2, 1, 1, 0)
    assert rep["reasons"]["wrong_type"] == 1
    still = json.loads(run("quarantine", "show", "utbetalning", "--json", cwd=tmp_path).stdout)
    assert [str(r["utbetalning_id"]) for r in still] == ["8"] and "wrong_type" in still[0]["_dz_reason"]
    project = load(tmp_path / "zones.yaml", env={})
    warm = WarmTable(project.warm_table_uri("utbetalning")).to_arrow().to_pylist()
    by_id = {r["utbetalning_id"]: r for r in warm}
    assert len(by_id) == len(warm)  # merged, not duplicated
    assert by_id[7]["brutto_sek"] == brutto7 and by_id[7]["andrad"].strftime("%Y-%m-%d %H:%M:%S") == changed[:19]
    assert str(by_id[8]["utbetald"]) != "2026-02-30"  # the malformed version never reached warm


def test_config_given_before_the_command_applies_to_it(tmp_path: Path) -> None:
    """`zones --config X cmd` and `zones cmd --config X` read the same file (the README says every command
    takes --config); a bad one is named either way."""
    (tmp_path / "cfg").mkdir()
    cfg = write_project(tmp_path / "cfg", datasets=["beslut"])
    bad = cfg.read_text().replace("watermark: andrad", "watermark_col: andrad", 1)
    (tmp_path / "cfg" / "other.yaml").write_text(bad)
    for args in (["--config", "cfg/other.yaml", "validate"], ["validate", "--config", "cfg/other.yaml"]):
        msg = clean_error(run(*args, cwd=tmp_path), 2)
        assert "other.yaml:" in msg and "watermark_col" in msg
