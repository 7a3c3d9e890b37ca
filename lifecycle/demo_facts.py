"""Fixed facts of the synthetic demo agency (names, municipalities, diagnoses, decision texts, benefit rates) and
the small calendar helpers the generator uses."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

_FEMALE = ("Anna Eva Maria Karin Sara Emma Lena Kerstin Ingrid Johanna Linnea Elin Ida Malin Sofia Hanna Amanda "
           "Julia Frida Camilla Elsa Maja Astrid Fatima").split()
_MALE = ("Erik Lars Karl Anders Johan Mikael Nils Jonas Oskar Lucas Viktor Daniel Fredrik Henrik Emil Axel Hugo "
         "Filip Mohammed Omar Elias Gustav Magnus Olof").split()
_EFTERNAMN = ("Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson Persson Svensson Gustafsson Pettersson "
              "Jonsson Jansson Hansson Bengtsson Lindberg Jakobsson Magnusson Lindström Olofsson Lindqvist Lindgren "
              "Axelsson Bergström Lundberg Lundgren Mattsson Berglund Fredriksson Sandberg Henriksson Forsberg "
              "Sjöberg Wallin Engström Eklund Danielsson Håkansson Hosseini Yilmaz Nguyen Abdi").split()
_KOMMUNER = ("0180 1480 1280 0380 0580 1880 1980 0680 2480 0581 1281 2281 1380 0780 2180 1780 0880 2380 2580 0114 "
             "1490 0484 2584").split()
_KOMMUN_WEIGHTS = (30, 20, 12, 8, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3, 2, 2)
_CLEARING = (("5001", 7), ("5253", 7), ("6152", 9), ("6789", 9), ("8327-9", 10), ("8105-9", 10), ("9020", 7))
_DIAGNOSER = (
    ("F32.1", "Nedstämdhet, trötthet och koncentrationssvårigheter."),
    ("F43.8A", "Kognitiv trötthet, minnessvårigheter och sömnstörning."),
    ("F41.1", "Ångest och oro som begränsar uthållighet och koncentration."),
    ("M54.5", "Smärta i ländryggen, nedsatt rörlighet vid böjning och lyft."),
    ("M51.1", "Utstrålande smärta i benet, kan inte sitta eller stå länge."),
    ("M75.1", "Nedsatt kraft i axeln, smärta vid arbete över axelhöjd."),
    ("S82.6", "Gipsbehandlad fotledsfraktur, kan inte belasta foten."), ("J06.9", "Feber och nedsatt allmäntillstånd."),
    ("C50.9", "Pågående cytostatikabehandling med uttalad trötthet."),
    ("I21.9", "Nedsatt ork efter hjärtinfarkt, pågående rehabilitering."),
    ("G43.0", "Återkommande migränanfall med ljus- och ljudkänslighet."))
_FORMAN_TEXT = {"SJP": "sjukpenning", "FP": "föräldrapenning", "TFP": "tillfällig föräldrapenning",
                "AKS": "aktivitetsstöd", "BOB": "bostadsbidrag"}
_MOTIVERING = {
    "BIFALL": "Ansökan om {f} beviljas för perioden {pf}–{pt}.",
    "DELVIS": "Ansökan om {f} beviljas delvis, för perioden {pf}–{pt}. Villkoren är inte uppfyllda för resten.",
    "AVSLAG": "Ansökan om {f} avslås eftersom villkoren för ersättning inte är uppfyllda.",
    "INDRAGNING": "Rätten till {f} upphör från och med {pf} eftersom förutsättningarna inte längre finns.",
    "ATERKRAV": "Felaktigt utbetald {f} för perioden {pf}–{pt} återkrävs."}
_NAMED = ("{n} har kompletterat ansökan med nya uppgifter.", "Telefonsamtal med {n} om ansökan.",
          "Uppgifter om {n} har hämtats in från arbetsgivaren.")  # free text naming the person: a realistic leak
_OMFATTNING = {"FP": ((1.0, 0.75, 0.5, 0.25, 0.125), (60, 5, 20, 10, 5)),
               "TFP": ((1.0, 0.75, 0.5, 0.25, 0.125), (70, 3, 15, 8, 4)), "AKS": ((1.0, 0.75, 0.5), (80, 5, 15))}
_AUTO = {"TFP": 0.7, "FP": 0.4, "BOB": 0.3, "AKS": 0.2}  # share of automated decisions (else 2 %)
_DECIDE_DAYS = {"SJP": (5, 40), "FP": (3, 20), "TFP": (1, 15), "AKS": (5, 20), "BOB": (10, 45)}
_AVSLAG = {"SJP": 12, "FP": 3, "TFP": 5, "AKS": 8, "BOB": 15}  # % rejected

_DAY = timedelta(days=1)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _add_months(d: date, n: int) -> date:
    m = d.year * 12 + d.month - 1 + n
    return date(m // 12, m % 12 + 1, 1)


def _month_end(d: date) -> date:
    return _add_months(d, 1) - _DAY


def _days(a: date, b: date) -> int:
    return (b - a).days + 1


def _weekdays(a: date, b: date) -> int:
    return sum(1 for i in range((b - a).days + 1) if (a + i * _DAY).weekday() < 5)


def _years_after(d: date, n: int) -> date:
    return d.replace(year=d.year + n, day=min(d.day, 28) if d.month == 2 else d.day)


def _between(rng: random.Random, a: date, z: date) -> date | None:
    return a + rng.randint(0, (z - a).days) * _DAY if z >= a else None


def _last_declared_period(today: date) -> date:
    """First day of the newest AGI period filed by ``today`` (the deadline is the 12th of the next month)."""
    return _add_months(today, -1 if today.day >= 12 else -2)


def _to_date(v: Any) -> date:
    return v if isinstance(v, date) else date.fromisoformat(str(v)[:10])


def _to_ts(v: Any) -> datetime:
    return _utc(v if isinstance(v, datetime) else datetime.fromisoformat(str(v)))
