"""Swedish personnummer and samordningsnummer: validate, normalise to 12 digits, find in text.

Our own code on purpose (domain.md): ``personnummer`` 3.2.1 rejects samordningsnummer with month 00 / day 60 and
``python-stdnum`` rejects every samordningsnummer.

Rules (Skatteverket):
- Parts: birth date ``YYMMDD``, birth number ``NNN`` (001-999), check digit ``C``. Stored as ``YYYYMMDDNNNC``.
- Check digit: Luhn over the nine digits ``YYMMDDNNN`` (weights 2,1,2,...; add the digits of each product).
- Date: a real calendar date. Samordningsnummer add 60 to the day; they may also use month ``00`` and/or day
  ``60`` for an unknown month/day (``191500722390`` is valid: month unknown, day 12).
- Century: from the digits of a 12-digit form, never from its separator. For a 10-digit form the closest past
  century by year relative to ``today``; the separator ``+`` (the person is 100 or older this year) adds 100 years.
"""

from __future__ import annotations

import calendar
import re
from datetime import date
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["find_personnummer", "is_valid", "kind", "luhn_check_digit", "normalise", "valid_mask"]

_FORM = re.compile(r"(\d{2})?(\d{6})([-+]?)(\d{4})", re.ASCII)
# In running text: not inside a longer run of digits. Tries 12 digits before 10 at each position.
_IN_TEXT = re.compile(r"(?<!\d)(\d{8}|\d{6})([-+]?)(\d{4})(?!\d)", re.ASCII)
_HEX = frozenset("0123456789abcdefABCDEF")
_LUHN_DOUBLE = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.int32)  # digit sum of 2 * d
_DAYS_IN_MONTH = np.array([31, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)  # [0] = unknown


def luhn_check_digit(nine: str) -> int:
    """The Luhn (mod 10) check digit of the nine digits ``YYMMDDNNN``: ``luhn_check_digit("640823323") == 4``."""
    if len(nine) != 9 or not nine.isascii() or not nine.isdigit():
        raise ValueError(f"luhn_check_digit needs exactly 9 digits YYMMDDNNN, got {nine!r}")
    total = 0
    for i, ch in enumerate(nine):
        product = int(ch) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def _problem(digits: str) -> str | None:
    """Why the 12 digits ``YYYYMMDDNNNC`` are not a valid number, or None when they are."""
    year, month, day = int(digits[0:4]), int(digits[4:6]), int(digits[6:8])
    if digits[8:11] == "000":
        return "birth number 000 does not exist (001-999)"
    expected = luhn_check_digit(digits[2:11])
    if int(digits[11]) != expected:
        return f"bad check digit {digits[11]} (Luhn over {digits[2:11]} gives {expected})"
    if day >= 60:  # samordningsnummer: day + 60; month 00 and day 60 mean "unknown"
        real_day = day - 60
        if month > 12:
            return f"month {month:02d} does not exist"
        if month == 0:
            return None if real_day <= 31 else f"day {day} (= {real_day} + 60) does not exist"
        if real_day == 0 or real_day <= calendar.monthrange(year, month)[1]:
            return None
        return f"samordningsnummer day {day} = {real_day} + 60 is not a day of {year}-{month:02d}"
    if not 1 <= month <= 12:
        return f"month {month:02d} does not exist"
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return f"{year}-{month:02d}-{day:02d} is not a calendar date"
    return None


def _century(yy: int, separator: str, today: date | None) -> int:
    ref = (today or date.today()).year
    year = ref - (ref - yy) % 100
    return year - 100 if separator == "+" else year


def normalise(s: str, *, today: date | None = None) -> str:
    """The 12-digit form ``YYYYMMDDNNNC`` of a valid personnummer or samordningsnummer.

    Accepts ``YYMMDD-NNNC``, ``YYMMDD+NNNC`` (100 years or older), ``YYMMDDNNNC``, ``YYYYMMDDNNNC`` and
    ``YYYYMMDD-NNNC`` (surrounding whitespace is ignored). ``today`` fixes the century of 10-digit forms
    (default: the current date). Raises ValueError saying why the input is not valid.
    """
    m = _FORM.fullmatch(s.strip()) if isinstance(s, str) else None
    if m is None:
        raise ValueError(f"{s!r} is not in a personnummer form (YYMMDD-NNNC, YYMMDD+NNNC, YYMMDDNNNC, "
                         "YYYYMMDDNNNC or YYYYMMDD-NNNC)")
    cc, yymmdd, separator, tail = m.groups()
    if cc is not None:
        digits = cc + yymmdd + tail
    else:
        digits = f"{_century(int(yymmdd[:2]), separator, today):04d}{yymmdd[2:]}{tail}"
    problem = _problem(digits)
    if problem is not None:
        raise ValueError(f"{s!r} is not a valid personnummer/samordningsnummer: {problem}")
    return digits


def is_valid(s: str, *, today: date | None = None) -> bool:
    """True when ``s`` is a valid personnummer or samordningsnummer in any accepted form."""
    try:
        normalise(s, today=today)
    except (ValueError, TypeError):
        return False
    return True


def kind(s: str, *, today: date | None = None) -> Literal["PNR", "SAMNR"]:
    """``"SAMNR"`` for a samordningsnummer (day + 60), ``"PNR"`` for a personnummer; ValueError if invalid."""
    return "SAMNR" if int(normalise(s, today=today)[6:8]) >= 60 else "PNR"


def valid_mask(arr: pa.Array | pa.ChunkedArray, *, check_digit: bool = True) -> pa.BooleanArray:
    """Vectorised validity of stored numbers: True where the value is exactly 12 digits ``YYYYMMDDNNNC`` and a
    valid personnummer or samordningsnummer. Other forms (separators, 10 digits, whitespace) and nulls are False.

    Works on string, large_string, binary and large_binary arrays with Arrow compute and numpy, no per-row
    Python loop: about 0.2 s per million rows, some 20x faster than :func:`is_valid` per row.
    ``check_digit=False`` checks all but the check digit: values that could be numbers, one in ten of which are.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=arr.type)
    if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        arr = arr.cast(pa.large_binary())
        offset_type: type[np.integer] = np.int64
    elif pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        arr = arr.cast(pa.binary())
        offset_type = np.int32
    else:
        raise TypeError(f"valid_mask needs a string or binary array, got {arr.type}")
    shaped = pc.fill_null(pc.match_substring_regex(arr, r"^[0-9]{12}$"), False)
    result = shaped.to_numpy(zero_copy_only=False).copy()
    if result.any():
        good = pc.filter(arr, shaped)  # only 12-byte values: their bytes are contiguous in the value buffer
        start = int(np.frombuffer(good.buffers()[1], dtype=offset_type)[good.offset])
        raw = np.frombuffer(good.buffers()[2], dtype=np.uint8)[start: start + 12 * len(good)]
        result[result] = _valid_digits(raw.reshape(-1, 12) - np.uint8(48), check_digit=check_digit)
    return pa.array(result, type=pa.bool_())


def _valid_digits(d: np.ndarray, *, check_digit: bool = True) -> np.ndarray:
    """Row-wise validity of an (n, 12) uint8 array of digits ``YYYYMMDDNNNC``."""
    c = [d[:, i].astype(np.int32) for i in range(12)]
    year = c[0] * 1000 + c[1] * 100 + c[2] * 10 + c[3]
    month = c[4] * 10 + c[5]
    day = c[6] * 10 + c[7]
    total = c[3] + c[5] + c[7] + c[9]
    for i in (2, 4, 6, 8, 10):
        total = total + _LUHN_DOUBLE[c[i]]
    luhn_ok = (10 - total % 10) % 10 == c[11] if check_digit else np.ones(len(d), dtype=bool)
    birth_ok = (c[8] + c[9] + c[10]) > 0
    samnr = day >= 60
    real_day = np.where(samnr, day - 60, day)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = np.where(samnr, month <= 12, (month >= 1) & (month <= 12))
    dim = _DAYS_IN_MONTH[np.minimum(month, 12)] + ((month == 2) & leap)
    day_ok = np.where(samnr, (real_day <= 31) & ((real_day == 0) | (month == 0) | (real_day <= dim)),
                      (real_day >= 1) & (real_day <= dim))
    return np.asarray(luhn_ok & birth_ok & month_ok & day_ok, dtype=bool)


def find_personnummer(text: str, *, today: date | None = None) -> list[str]:
    """Every valid personnummer/samordningsnummer in ``text``, normalised to 12 digits, in order of first
    appearance and without duplicates.

    Finds ``YYYYMMDDNNNC``, ``YYYYMMDD-NNNC``, ``YYMMDD-NNNC``, ``YYMMDD+NNNC`` and ``YYMMDDNNNC`` that are not
    part of a longer run of digits (letters or other bytes around them are fine, so text decoded from binary
    files works), except digits inside a run of 16 or more hexadecimal characters: a hash or keyed pseudonym
    (64 hex characters) holds 12-digit runs that pass by chance. A 12-digit run that fails the check digit or
    date is not reported, nor is any 10-digit part of it. ``today`` fixes the century of 10-digit forms.
    """
    found: dict[str, None] = {}
    for m in _IN_TEXT.finditer(text):
        if not m.group(2) and _in_hex_token(text, m.start(), m.end()):
            continue
        try:
            digits = normalise(m.group(0), today=today)
        except ValueError:
            continue
        found.setdefault(digits, None)
    return list(found)


def _in_hex_token(text: str, start: int, end: int) -> bool:
    left, right = start, end
    while left > 0 and text[left - 1] in _HEX:
        left -= 1
    while right < len(text) and text[right] in _HEX:
        right += 1
    return right - left >= 16
