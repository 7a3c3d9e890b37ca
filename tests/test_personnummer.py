"""zones.personnummer: check digit, forms, century, samordningsnummer, vectorised mask, finding numbers in text."""

from __future__ import annotations

import random
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from zones.personnummer import find_personnummer, is_valid, kind, luhn_check_digit, normalise, valid_mask

TEST_LIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "skatteverket-testpersonnummer.txt"
TODAY = date(2025, 6, 1)


@pytest.fixture(scope="module")
def test_numbers() -> list[str]:
    return TEST_LIST.read_text(encoding="utf-8").split()


def test_luhn_domain_example() -> None:
    assert luhn_check_digit("640823323") == 4  # domain.md: 640823-323 -> check digit 4
    assert luhn_check_digit("701063239") == 1
    for bad in ("64082332", "6408233234", "64082332x", "６４０８２３３２３"):
        with pytest.raises(ValueError, match="9 digits"):
            luhn_check_digit(bad)


@pytest.mark.parametrize(("text", "expected"), [
    ("640823-3234", "196408233234"),
    ("6408233234", "196408233234"),
    ("196408233234", "196408233234"),
    ("19640823-3234", "196408233234"),
    ("  640823-3234\n", "196408233234"),
    ("900101+9802", "189001019802"),    # '+': 100 years or older
    ("900101-9802", "199001019802"),
    ("250101-2385", "202501012385"),    # this year is the closest past year
    ("260101-2384", "192601012384"),    # next year's YY is last century's
    ("18900101+9802", "189001019802"),  # a 12-digit form: the separator never decides the century
    ("20121212+1212", "201212121212"),
])
def test_normalise_forms_and_century(text: str, expected: str) -> None:
    assert normalise(text, today=TODAY) == expected
    assert is_valid(text, today=TODAY)


def test_century_follows_today() -> None:
    assert normalise("121212-1212", today=date(2025, 1, 1)) == "201212121212"
    assert normalise("121212+1212", today=date(2025, 1, 1)) == "191212121212"
    assert normalise("121212-1212", today=date(2011, 1, 1)) == "191212121212"
    assert normalise("121212+1212", today=date(2011, 1, 1)) == "181212121212"


def test_samordningsnummer() -> None:
    assert normalise("701063-2391", today=TODAY) == "197010632391"  # born 1970-10-03
    assert kind("701063-2391", today=TODAY) == "SAMNR"
    assert kind("196408233234") == "PNR"
    assert kind("191500722390") == "SAMNR"   # month 00 (unknown), day 12
    assert is_valid("191500602394")           # month 00 and day 60: both unknown
    assert is_valid("197010602394")           # day 60: day unknown, month known
    assert not is_valid("197004912395")       # 31 April + 60
    assert not is_valid("190102902392")       # 30 February + 60
    assert not is_valid("191513722395")       # month 13


@pytest.mark.parametrize(("text", "reason"), [
    ("201701272394", "check digit"),             # domain.md: bad check digit
    ("190302299813", "not a calendar date"),     # domain.md: 29 Feb in a non-leap year
    ("190002292381", "not a calendar date"),     # 1900 is not a leap year
    ("196408230008", "birth number 000"),
    ("196413233237", "month 13"),
    ("640823 3234", "form"),
    ("640823--3234", "form"),
    ("64082-33234", "form"),
    ("abc", "form"),
    ("", "form"),
    ("19640823323", "form"),
])
def test_invalid_numbers_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalise(text, today=TODAY)
    assert not is_valid(text, today=TODAY)


def test_leap_days() -> None:
    assert is_valid("200002292399")  # 2000 is a leap year
    assert is_valid("000229-2381", today=TODAY)  # 2000-02-29 ...
    assert not is_valid("000229+2381", today=TODAY)  # ... but 1900-02-29 does not exist


def test_every_skatteverket_test_number_is_valid(test_numbers: list[str]) -> None:
    assert len(test_numbers) == 41493
    assert all(is_valid(n) for n in test_numbers)
    assert all(normalise(n) == n for n in test_numbers[:2000])


def test_valid_mask_matches_scalar_validator(test_numbers: list[str]) -> None:
    rng = random.Random(5)
    noise = ["".join(rng.choice("0123456789") for _ in range(12)) for _ in range(20000)]
    noise += [f"19{rng.randrange(100):02d}{rng.randrange(14):02d}{rng.randrange(55, 95):02d}"
              f"{rng.randrange(10000):04d}" for _ in range(20000)]  # samordningsnummer-like
    values: list[str | None] = [*test_numbers, *noise, "201701272394", "190302299813", "191500722390",
                                "19640823-3234", "6408233234", " 196408233234", "１９６４０８２３３２３４", None, ""]
    mask = valid_mask(pa.array(values)).to_pylist()
    expected = [v is not None and len(v) == 12 and v.isascii() and v.isdigit() and is_valid(v) for v in values]
    assert mask == expected
    assert all(mask[: len(test_numbers)])
    assert mask[-9:] == [False, False, True, False, False, False, False, False, False]
    assert 0 < sum(mask[len(test_numbers):]) < len(noise)


@pytest.mark.parametrize("variant", ["slice", "chunked", "large_string", "binary", "empty"])
def test_valid_mask_array_variants(variant: str) -> None:
    base = pa.array(["x", "196408233234", "201701272394", None, "197010632391", "190302299813"])
    expected = [True, False, False, True, False]
    if variant == "slice":
        arr, want = base.slice(1), expected
    elif variant == "chunked":
        arr, want = pa.chunked_array([base.slice(1, 2), base.slice(3)]), expected
    elif variant == "large_string":
        arr, want = base.cast(pa.large_string()).slice(1), expected
    elif variant == "binary":
        arr, want = base.cast(pa.binary()).slice(1), expected
    else:
        arr, want = pa.array([], pa.string()), []
    result = valid_mask(arr)
    assert result.type == pa.bool_() and result.null_count == 0
    assert result.to_pylist() == want


def test_valid_mask_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        valid_mask(pa.array([196408233234]))


def test_valid_mask_is_vectorised(test_numbers: list[str]) -> None:
    arr = pa.array(test_numbers * 5)
    valid_mask(arr)  # warm up
    started = time.perf_counter()
    valid_mask(arr)
    vectorised = time.perf_counter() - started
    started = time.perf_counter()
    [is_valid(v) for v in test_numbers * 5]
    scalar = time.perf_counter() - started
    assert vectorised * 4 < scalar, (vectorised, scalar)


def test_find_personnummer_in_noisy_text() -> None:
    text = (
        "Ärende 2024-0312: Kontakt med 640823-3234 (tel 08-123 456 78, 070-1234567). Sökande 19701063-2391 "
        "har samordningsnummer. Felaktigt: 201701272394 och 190302299813 och 19000229-2381. Order 1234567890123, "
        "belopp 12 500 kr, datum 2025-06-01, konto 8327-9 1234567890. Igen: 196408233234. "
        "Gammal: 900101+9802. Binärt:\x00\x01xyz197601022382\xffx 0196408233234"
    )
    found = find_personnummer(text, today=TODAY)
    assert found == ["196408233234", "197010632391", "189001019802", "197601022382"]


def test_find_personnummer_does_not_split_longer_runs() -> None:
    # 1900-02-29 does not exist; its last ten digits would be a valid 2000-02-29 number on their own
    assert is_valid("000229-2381", today=TODAY)
    assert find_personnummer("x190002292381y", today=TODAY) == []
    assert find_personnummer("1196408233234", today=TODAY) == []   # 13 digits
    assert find_personnummer("19640823323", today=TODAY) == []     # 11 digits
    assert find_personnummer("xyz196408233234qrs") == ["196408233234"]
    assert find_personnummer("Kalle196408233234") == ["196408233234"]  # a word, not a hex token


def test_find_personnummer_skips_hex_hashes() -> None:
    # a 64-hex-character pseudonym holds decimal runs; 12 of them can pass Luhn and the date by chance
    digest = "ab" * 10 + "196408233234" + "cd" * 16
    assert find_personnummer(digest) == []
    assert find_personnummer(f"pseudonym={digest}, pnr=196408233234") == ["196408233234"]
    assert find_personnummer("ab" * 10 + "19640823-3234") == ["196408233234"]  # a separator is not hex
    assert find_personnummer("6408233234 och 640823-3234", today=TODAY) == ["196408233234"]
    assert find_personnummer("") == []


def test_find_personnummer_finds_every_test_number(test_numbers: list[str]) -> None:
    sample = test_numbers[::97]
    text = " | ".join(f"{n[:8]}-{n[8:]}" if i % 2 else n for i, n in enumerate(sample))
    assert find_personnummer(text) == sample
