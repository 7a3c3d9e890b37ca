"""ISO-8601 durations (``P13M``, ``P10Y``, ``PT5M``) as calendar-aware values.

Retention periods are calendar periods ("13 months from the payment date"), so a duration keeps years, months and
days apart and is added with calendar arithmetic, never turned into a fixed number of seconds.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

_RX = re.compile(
    r"^P(?!$)(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


@dataclass(frozen=True, order=True)
class Duration:
    years: int = 0
    months: int = 0
    days: int = 0
    seconds: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Duration:
        m = _RX.match(text.strip().upper()) if isinstance(text, str) else None
        if not m:
            raise ValueError(
                f"{text!r} is not an ISO-8601 duration; write e.g. P13M (13 months), P10Y, P30D or PT5M"
            )
        g = {k: v for k, v in m.groupdict().items()}
        return cls(
            years=int(g["y"] or 0),
            months=int(g["mo"] or 0),
            days=int(g["d"] or 0) + 7 * int(g["w"] or 0),
            seconds=int(g["h"] or 0) * 3600 + int(g["mi"] or 0) * 60 + float(g["s"] or 0),
        )

    def __str__(self) -> str:
        out = "P"
        out += f"{self.years}Y" if self.years else ""
        out += f"{self.months}M" if self.months else ""
        out += f"{self.days}D" if self.days else ""
        if self.seconds:
            out += f"T{self.seconds:g}S"
        return out if out != "P" else "PT0S"

    @property
    def timedelta(self) -> timedelta:
        """Only for sub-day durations (settle lag, lookback): years/months have no fixed length."""
        if self.years or self.months:
            raise ValueError(f"{self} has calendar months/years and no fixed length")
        return timedelta(days=self.days, seconds=self.seconds)

    def _shift_months(self, d: date, sign: int) -> date:
        total = d.year * 12 + (d.month - 1) + sign * (self.years * 12 + self.months)
        y, m = divmod(total, 12)
        day = min(d.day, calendar.monthrange(y, m + 1)[1])
        return d.replace(year=y, month=m + 1, day=day)

    def add_to(self, d: date) -> date:
        out = self._shift_months(d, +1) + timedelta(days=self.days)
        if isinstance(d, datetime):
            return out + timedelta(seconds=self.seconds)
        return out

    def subtract_from(self, d: datetime) -> datetime:
        shifted = self._shift_months(d, -1)
        assert isinstance(shifted, datetime)
        return shifted - timedelta(days=self.days, seconds=self.seconds)
