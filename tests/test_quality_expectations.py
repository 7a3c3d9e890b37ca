"""The datazones GX expectations on good and bad data, run by the real gate (GX 1.24 on DuckDB)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from quality.gx_gate import GXGate
from zones import personnummer
from zones.model import Dataset

TESTLIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "skatteverket-testpersonnummer.txt"


def _ds(columns: dict[str, dict[str, object]], expectations: list[dict[str, object]] | None = None) -> Dataset:
    cols = {"id": {"class": "none"}, "andrad": {"class": "none"}, "dag": {"class": "none"}, **columns}
    return Dataset.model_validate({
        "table": "t", "owner": "o", "steward": "s", "primary_key": ["id"], "watermark": "andrad",
        "business_date": "dag", "columns": cols, "quality": {"expectations": expectations or []},
        "retention": {"hot": {"keep": "P1Y"}, "warm": {"keep": "P1Y"}, "cold": {"action": "preserve"}}})


def _table(**cols: list[object]) -> pa.Table:
    n = len(next(iter(cols.values())))
    base = {"id": list(range(1, n + 1)), "andrad": [date(2025, 1, 1)] * n, "dag": [date(2025, 1, 1)] * n}
    return pa.table({**base, **cols})


def _failing(ds: Dataset, t: pa.Table, name: str = "t") -> dict[int, str]:
    out = GXGate(name, ds).check(t, bad_type=pa.array([False] * t.num_rows), dataset=ds)
    return dict(zip(outcome_ids(out.rejected), out.reasons.to_pylist(), strict=True))


def outcome_ids(t: pa.Table) -> list[int]:
    return t.column("id").to_pylist()


def test_personnummer_agrees_with_our_validator_on_the_whole_test_list_and_known_bad_numbers() -> None:
    numbers = [ln.strip() for ln in TESTLIST.read_text().splitlines() if ln.strip().isdigit()]
    assert len(numbers) > 40_000
    bad = ["201701272394", "190302299813", "196408233235", "196408230004", "196413233234", "19640823323",
           "1964082332345", "19640823323X", "", "190000000000"]
    values = numbers + bad
    ds = _ds({"pnr": {"class": "direct", "warm": "pseudonymise", "sealed": True, "format": "identitetsnummer"}})
    failing = _failing(ds, _table(pnr=values))
    expected_bad = {i + 1 for i, v in enumerate(values) if not personnummer.is_valid(v) or len(v) != 12}
    assert set(failing) == expected_bad
    assert {len(numbers) + 1, len(numbers) + 2} <= set(failing)  # bad check digit; 29 Feb 1903
    assert all("valid_personnummer(pnr)" in r for r in failing.values())


def test_samordningsnummer_edges_nulls_and_the_plus_form() -> None:
    this_year = date.today().year
    old = f"{(this_year - 101) % 100:02d}0101"  # born 101 years ago: written with + (100 or older)
    plus = f"{old}+239{personnummer.luhn_check_digit(old + '239')}"
    assert personnummer.normalise(plus).startswith(str(this_year - 101))
    values = ["197010632391", "191500722390", "201302292383", "640823-3234", plus, None, "197013632391"]
    # samnr day 63 = 3rd; month 00 unknown; (a personnummer for 29 Feb 2013 does not exist); short form; + form;
    # null; month 13 does not exist
    cols = {"pnr": {"class": "direct", "warm": "pseudonymise", "sealed": True, "format": "identitetsnummer"}}
    stored_only = _failing(_ds(cols), _table(pnr=values))
    assert set(stored_only) == {3, 4, 5, 6, 7}  # short forms fail unless allowed; null fails, not skipped
    any_form = _ds({"pnr": {"class": "direct", "warm": "pseudonymise", "sealed": True}}, [
        {"expect_column_values_to_be_valid_personnummer": {"column": "pnr", "forms": "any"}}])
    assert set(_failing(any_form, _table(pnr=values))) == {3, 6, 7}
    samnr_only = _ds({"pnr": {"class": "direct", "warm": "pseudonymise", "sealed": True,
                              "format": "samordningsnummer"}})
    assert set(_failing(samnr_only, _table(pnr=["197010632391", "196408233234"]))) == {2}


def test_netto_period_multiple_of_and_icd10() -> None:
    ds = _ds({"brutto": {"class": "none"}, "skatt": {"class": "none"}, "netto": {"class": "none"},
              "fr": {"class": "none"}, "tom": {"class": "none"}, "bob": {"class": "none", "multiple_of": 100},
              "diag": {"class": "special", "warm": "drop", "sealed": True, "format": "icd10_se"}}, [
        {"expect_netto_to_equal_brutto_minus_skatt": {"column_list": ["netto", "brutto", "skatt"]}},
        {"expect_period_to_be_ordered": {"column_A": "fr", "column_B": "tom"}}])
    d = date
    t = _table(brutto=[1000, 1000, 1000, 1000, 1000], skatt=[300, 300, 300, 300, 300],
               netto=[700, 701, 700, 700, 700],
               fr=[d(2025, 1, 1), d(2025, 1, 1), d(2025, 2, 1), None, d(2025, 1, 1)],
               tom=[d(2025, 1, 31), None, d(2025, 1, 31), d(2025, 1, 1), d(2025, 1, 1)],
               bob=[1200, 1300, 1250, None, 0],
               diag=["F32.1", "F43.8A", "M545", "F3", "Z99.99"])
    failing = _failing(ds, t)
    assert set(failing) == {2, 3, 4}
    assert "column_values_to_be_multiple_of(bob)" in failing[3] and "icd10" in failing[4]


def test_a_bad_batch_after_a_clean_one_is_caught() -> None:
    """GX caches metrics by batch id and its DuckDB cursor keeps an old snapshot: both are reset per batch."""
    ds = _ds({"belopp": {"class": "none", "min": 0}})
    gate = GXGate("again", ds)
    clean = gate.check(_table(belopp=[1, 2, 3]), bad_type=pa.array([False] * 3), dataset=ds)
    bad = gate.check(_table(belopp=[1, -2, 3]), bad_type=pa.array([False] * 3), dataset=ds)
    assert clean.rejected.num_rows == 0 and bad.rejected.column("id").to_pylist() == [2]
    schema_changed = gate.check(pa.table({"id": [1], "andrad": [date(2025, 1, 1)], "dag": [date(2025, 1, 1)],
                                          "belopp": [-5], "ny": ["x"]}), bad_type=pa.array([False]), dataset=ds)
    assert schema_changed.rejected.num_rows == 1


def test_results_are_scrubbed_of_values_and_blocking_names_the_check() -> None:
    ds = _ds({"pnr": {"class": "direct", "warm": "pseudonymise", "sealed": True, "format": "personnummer"},
              "belopp": {"class": "none", "type": "integer", "severity": "block", "min": 0}})
    t = _table(pnr=["201701272394", "196408233234"], belopp=[-1, 5])
    out = GXGate("scrub", ds).check(t, bad_type=pa.array([False, False]), dataset=ds)
    assert out.blocked and "column_values_to_be_between(belopp) [block] failed 1 of 2 rows" in out.blocking_summary()
    text = json.dumps(out.result)
    assert "201701272394" not in text and "unexpected_count" in text
    assert out.result is not None
    for r in out.result["results"]:  # counts and verdicts only: GX's value lists are gone
        assert not set(r["result"]) & {"partial_unexpected_list", "unexpected_list", "unexpected_index_list",
                                       "partial_unexpected_counts", "details"}, r["result"]
    pnr = next(r for r in out.result["results"] if "personnummer" in r["expectation_config"]["type"])
    assert pnr["result"]["unexpected_count"] == 1 and "observed_value" not in pnr["result"]


@pytest.mark.parametrize("severity, mostly, blocked, quarantined", [
    ("quarantine", 0.4, False, [2, 4]), ("quarantine", 0.9, True, [2, 4]),
    ("block", 0.4, False, []), ("block", 0.9, True, []), ("block", None, True, [])])
def test_mostly_sets_where_a_check_blocks(severity: str, mostly: float | None, blocked: bool,
                                          quarantined: list[int]) -> None:
    """2 of 5 rows fail: within mostly 0.4 nothing blocks (a block check then commits everything), beyond it does."""
    kwargs: dict[str, object] = {"column": "kod", "value_set": ["A"]}
    if mostly is not None:
        kwargs["mostly"] = mostly
    ds = _ds({"kod": {"class": "none"}}, [{"expect_column_values_to_be_in_set": kwargs, "severity": severity}])
    out = GXGate(f"m_{severity}_{int((mostly or 1) * 10)}", ds).check(_table(kod=["A", "B", "A", "C", "A"]),
                                                   bad_type=pa.array([False] * 5), dataset=ds)
    assert out.blocked is blocked
    assert (out.rejected.column("id").to_pylist() if out.rejected.num_rows else []) == quarantined
