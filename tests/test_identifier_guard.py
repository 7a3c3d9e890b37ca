"""The guard on hot columns nobody declared (``on_new_column: add``): a column of personnummer stops the batch
whatever type stores it, and a column of other numbers that only now and then looks like one does not."""

from __future__ import annotations

import decimal

import pyarrow as pa
import pytest

from lifecycle.transform import ColumnPlan, refuse_undeclared_identifiers
from tests.conftest import TEST_NUMBERS
from zones.errors import SchemaChangeError
from zones.personnummer import is_valid

NUMBERS = [n for n in TEST_NUMBERS.read_text().split() if len(n) == 12][:200]


def _check(arr: pa.Array) -> None:
    refuse_undeclared_identifiers("beslut", [ColumnPlan("extra", arr.type, None)], pa.table({"extra": arr}))


@pytest.mark.parametrize("kind", ["int64", "decimal", "decimal2", "float64", "string"])
def test_personnummer_in_an_undeclared_column_stop_the_batch_whatever_the_type(kind: str) -> None:
    values = [int(n) for n in NUMBERS] + [None]
    arr = {"int64": lambda: pa.array(values, pa.int64()),
           "decimal": lambda: pa.array([decimal.Decimal(v) if v else None for v in values], pa.decimal128(12, 0)),
           "decimal2": lambda: pa.array([decimal.Decimal(f"{v}.00") if v else None for v in values],
                                        pa.decimal128(14, 2)),
           "float64": lambda: pa.array([float(v) if v else None for v in values], pa.float64()),
           "string": lambda: pa.array([str(v) if v else None for v in values], pa.string())}[kind]()
    with pytest.raises(SchemaChangeError, match=r"extra.*200 value\(s\).*personnummer") as err:
        _check(arr)
    assert not any(n in str(err.value) for n in NUMBERS)


def test_date_coded_ids_that_sometimes_pass_the_check_digit_do_not_stop_a_batch() -> None:
    """Case numbers like 2019010100042 (date + sequence) are 12 digits with a valid date: about one in ten passes
    the Luhn check by chance. A column where that is the exception is not a column of personnummer."""
    ids = [int(f"20190101{i:04d}") for i in range(1, 1001)]
    share = sum(is_valid(str(i)) for i in ids) / len(ids)
    assert 0.05 < share < 0.2  # the chance matches are really there
    _check(pa.array(ids, pa.int64()))
    _check(pa.array([decimal.Decimal(i) for i in ids], pa.decimal128(12, 0)))
    with pytest.raises(SchemaChangeError):  # text is held to every value: a typed number is taken at its word
        _check(pa.array([str(i) for i in ids], pa.string()))


@pytest.mark.parametrize("pad", ["000000000000", "999999999999", "196401019999"])
def test_personnummer_among_sentinels_or_other_numbers_still_stop_the_batch(pad: str) -> None:
    """Sentinels and numbers that are no date do not dilute the share; a third of the plausible numbers being
    valid is far above chance (one in ten)."""
    values = NUMBERS[:10] + [pad] * 11
    for arr in (pa.array(values, pa.string()), pa.array([int(v) for v in values], pa.int64())):
        with pytest.raises(SchemaChangeError, match=r"10 value\(s\)"):
            _check(arr)
    bad_digit = [v[:11] + str((int(v[11]) + 1) % 10) for v in NUMBERS[1:3]]
    with pytest.raises(SchemaChangeError, match=r"1 value\(s\)"):
        _check(pa.array([int(v) for v in [NUMBERS[0], *bad_digit]], pa.int64()))


def test_a_few_personnummer_among_names_or_in_free_text_still_stop_the_batch() -> None:
    names = [f"Handläggare {i}" for i in range(1000)]
    with pytest.raises(SchemaChangeError, match=r"3 value\(s\) in this batch are personnummer"):
        _check(pa.array(names + NUMBERS[:3], pa.string()))
    with pytest.raises(SchemaChangeError, match=r"1 value\(s\) in this batch contain personnummer"):
        _check(pa.array([*names, f"se {NUMBERS[0][2:8]}-{NUMBERS[0][8:]}"], pa.string()))
