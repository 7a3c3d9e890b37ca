from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, write_project
from zones.config import load
from zones.durations import Duration
from zones.errors import ConfigError


def _bad(tmp_path: Path, old: str, new: str) -> str:
    text = (REPO / "zones.yaml").read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "zones.yaml"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load(p, env={})
    return str(exc.value)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_example_loads_with_every_dataset() -> None:
    p = load(REPO / "zones.yaml", env={})
    assert set(p.config.datasets) == {"individ", "arende", "beslut", "utbetalning", "lakarintyg", "agi_iu"}
    utb = p.dataset("utbetalning")
    assert utb.columns["konto"].warm == "pseudonymise" and utb.columns["konto"].sealed is True
    assert utb.retention.hot.keep == Duration(months=13)
    assert p.hot_url.startswith("sqlite:////") and p.hot_url.endswith(".datazones/hot.db")


def test_unknown_key_names_file_line_path_and_allowed_keys(tmp_path: Path) -> None:
    msg = _bad(tmp_path, "    business_date: utbetald", "    busines_date: utbetald")
    line = _line_of((tmp_path / "zones.yaml").read_text(), "busines_date")
    assert f"zones.yaml:{line}: datasets.utbetalning.busines_date: unknown key 'busines_date'" in msg
    assert "did you mean 'business_date'" in msg and "allowed keys here:" in msg and "watermark" in msg


def test_disposal_without_basis_is_refused(tmp_path: Path) -> None:
    msg = _bad(tmp_path, 'cold: {action: dispose, after: P10Y, basis: "RA-MS (placeholder)"}',
               "cold: {action: dispose, after: P10Y}")
    assert "datasets.lakarintyg.retention.cold.basis" in msg and "missing" in msg


def test_raw_direct_identifier_in_warm_is_refused(tmp_path: Path) -> None:
    msg = _bad(tmp_path, "konto: {class: direct, warm: pseudonymise, sealed: true",
               "konto: {class: direct, warm: keep")
    assert "datasets.utbetalning.columns.konto" in msg and "may not reach the warm zone raw" in msg


def test_lossy_policy_must_say_whether_sealed(tmp_path: Path) -> None:
    msg = _bad(tmp_path, "fornamn: {class: direct, warm: drop, sealed: true}", "fornamn: {class: direct, warm: drop}")
    assert "datasets.individ.columns.fornamn" in msg and "sealed: true" in msg and "basis" in msg


def test_bad_duration_and_bad_enum(tmp_path: Path) -> None:
    assert "not an ISO-8601 duration" in _bad(tmp_path, "hot: {keep: P13M}", "hot: {keep: 13 months}")
    msg = _bad(tmp_path, "partition_by: none", "partition_by: weekly")
    assert "datasets.individ.partition_by" in msg and "'year', 'month' or 'none'" in msg


def test_identifiers_cannot_inject_sql_or_escape(tmp_path: Path) -> None:
    msg = _bad(tmp_path, "    table: utbetalning", '    table: "utbetalning; DROP TABLE individ"')
    assert "not a safe SQL identifier" in msg
    msg = _bad(tmp_path, "  utbetalning:\n", "  ../../etc:\n")
    assert "not a safe SQL identifier" in msg


def test_credentials_in_yaml_are_refused(tmp_path: Path) -> None:
    path = write_project(tmp_path, edit=lambda raw: raw.update(
        warm={"provider": "s3", "uri": "s3://b/warm", "storage_options": {"AWS_SECRET_ACCESS_KEY": "x"}}))
    with pytest.raises(ConfigError, match="look like credentials"):
        load(path, env={})


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    p = tmp_path / "zones.yaml"
    p.write_text("version: 1\ndatasets:\n  a: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"zones\.yaml:\d+: not valid YAML"):
        load(p, env={})


def test_precedence_explicit_over_env_over_yaml(tmp_path: Path) -> None:
    path = write_project(tmp_path, hot_url="sqlite:///from-yaml.db")
    assert load(path, env={}).hot_url.endswith("from-yaml.db")
    env = {"DATAZONES__HOT__URL": "postgresql+psycopg://u@h/db", "DATAZONES__DEFAULTS__BATCH_ROWS": "1234"}
    p = load(path, env=env)
    assert p.hot_url == "postgresql+psycopg://u@h/db" and p.config.defaults.batch_rows == 1234
    assert p.env_applied == ("DATAZONES__DEFAULTS__BATCH_ROWS", "DATAZONES__HOT__URL")
    p = load(path, env=env, overrides={"hot.url": "sqlite:///explicit.db"})
    assert p.hot_url.endswith("explicit.db")


def test_env_override_is_validated_too(tmp_path: Path) -> None:
    path = write_project(tmp_path)
    with pytest.raises(ConfigError, match=r"defaults\.batch_rows"):
        load(path, env={"DATAZONES__DEFAULTS__BATCH_ROWS": "-5"})


def test_models_are_frozen() -> None:
    p = load(REPO / "zones.yaml", env={})
    with pytest.raises(Exception, match="frozen"):
        p.config.dataset("utbetalning").table = "x"  # type: ignore[misc]


def test_duration_calendar_arithmetic() -> None:
    from datetime import date

    assert Duration.parse("P13M").add_to(date(2024, 1, 31)) == date(2025, 2, 28)
    assert Duration.parse("P1Y").add_to(date(2024, 2, 29)) == date(2025, 2, 28)
    assert Duration.parse("PT5M").timedelta.total_seconds() == 300
    with pytest.raises(ValueError):
        Duration.parse("P")


def test_env_override_errors_name_the_variable_not_a_yaml_line(tmp_path: Path) -> None:
    path = write_project(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load(path, env={"DATAZONES__DEFAULTS__BATCH_ROWS": "abc"})
    assert str(exc.value).startswith("environment DATAZONES__DEFAULTS__BATCH_ROWS=abc: defaults.batch_rows: ")
    assert "zones.yaml:" not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load(path, env={"DATAZONES__HOT__URLL": "x"})
    assert str(exc.value).startswith("environment DATAZONES__HOT__URLL=x: hot.urll: unknown key 'urll'")
    with pytest.raises(ConfigError) as exc:  # a dataset the environment made up: its missing keys are the var's
        load(path, env={"DATAZONES__DATASETS__NEU__TABLE": "neu"})
    assert "environment DATAZONES__DATASETS__NEU__TABLE=neu: datasets.neu.primary_key: required key" in str(exc.value)
    # a yaml error next to an env override is still blamed on its line; an explicit value replaces the env one
    msg = _bad(tmp_path, "partition_by: none", "partition_by: weekly")
    assert "zones.yaml:" in msg and "environment" not in msg
    with pytest.raises(ConfigError) as exc:
        load(path, env={"DATAZONES__DEFAULTS__BATCH_ROWS": "100"}, overrides={"defaults.batch_rows": "abc"})
    assert "environment" not in str(exc.value)


def test_env_values_of_secret_looking_variables_are_not_echoed(tmp_path: Path) -> None:
    path = write_project(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load(path, env={"DATAZONES__HOT__PASSWORD": "hunter2"})
    assert "environment DATAZONES__HOT__PASSWORD=***: hot.password: unknown key" in str(exc.value)
    assert "hunter2" not in str(exc.value)


@pytest.mark.parametrize(("url", "problem"), [
    ("notaurl", "not a SQLAlchemy URL"),
    ("nosuchdb://u:pw@h/db", "no SQLAlchemy dialect and driver 'nosuchdb'"),
    ("postgresql+psycopg://u:pw@h:port/db", "not a SQLAlchemy URL (the port is not a number)"),
])
def test_a_bad_store_url_is_a_config_error_naming_its_source(tmp_path: Path, url: str, problem: str) -> None:
    path = write_project(tmp_path, ledger_url=url)
    project = load(path, env={})  # loading needs no database driver; using the URL checks it
    with pytest.raises(ConfigError) as exc:
        project.ledger_url
    line = _line_of(path.read_text(), "ledger:") + 1
    assert str(exc.value).startswith(f"{path.resolve()}:{line}: ledger.url: {problem}")
    assert exc.value.key_path == "ledger.url" and exc.value.fix and ":pw@" not in str(exc.value)
    project = load(write_project(tmp_path), env={"DATAZONES__HOT__URL": url})
    with pytest.raises(ConfigError) as exc:
        project.check_urls()
    assert str(exc.value).startswith("environment DATAZONES__HOT__URL=")
    assert f": hot.url: {problem}" in str(exc.value) and ":pw@" not in str(exc.value)
    assert load(write_project(tmp_path), env={}).hot_url.startswith("sqlite:////")


@pytest.mark.parametrize("password", ["s3cret", "p@ss", "a/b", "q?x", "h#sh", "c:olon", "all/@?#:"])
def test_redact_hides_a_url_password_whatever_characters_it_holds(password: str) -> None:
    from zones.config import redact

    shown = redact(f"postgresql+psycopg://ann:{password}@db.example:5432/hot?sslmode=require")
    assert shown == "postgresql+psycopg://ann:***@db.example:5432/hot?sslmode=require"
    for url in (f"postgresql://:{password}@db/x", f"mysql://u:{password}@h/d?password={password}"):
        assert password not in redact(url), url


def test_redact_leaves_a_url_without_a_password_readable() -> None:
    from zones.config import redact

    for url in ("sqlite:///.datazones/hot.db", "postgresql://ann@db:5432/x", "postgresql://db/x?application_name=a@b"):
        assert redact(url) == url


def test_redact_finds_urls_anywhere_in_a_text() -> None:
    from zones.config import redact

    for text in ("error connecting to postgresql://ann:s3cret@db/hot", "  postgresql://ann:s3cret@db/hot",
                 '{url: "postgresql+nodriver://ann:s3cret@db/hot"}',
                 "hot postgresql://ann:s3cret@db/a and ledger mysql://bo:s3cret@db/b (both)"):
        shown = redact(text)
        assert "s3cret" not in shown and "ann:***@db" in shown, shown
    assert redact("hot postgresql://ann:x@db/a and ledger mysql://bo:y@db/b (both)") == \
        "hot postgresql://ann:***@db/a and ledger mysql://bo:***@db/b (both)"


def test_an_env_mapping_holding_a_bad_url_never_shows_its_password(tmp_path: Path) -> None:
    path = write_project(tmp_path, datasets=["beslut"])
    with pytest.raises(ConfigError) as exc:
        load(path, env={"DATAZONES__HOT": '{url: "postgresql+nodriver://ann:s3cret@db/hot"}'}).check_urls()
    assert "s3cret" not in str(exc.value) and "ann:***@db" in str(exc.value)
