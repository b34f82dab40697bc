"""Swedish personnummer and samordningsnummer: parse, validate, normalise, compute age.

Accepted forms: ``YYYYMMDD-NNNN``, ``YYYYMMDDNNNN``, ``YYMMDD-NNNN``, ``YYMMDDNNNN`` and ``YYMMDD+NNNN``
(``+`` means 100 years or older). The normal form is 12 digits ``YYYYMMDDNNNN``. The last digit is a
Luhn check digit over the 10-digit form. A samordningsnummer has 60 added to the day.

Error messages never contain the number itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final

_LONG: Final = re.compile(r"^(\d{8})-?(\d{4})$", re.ASCII)  # ASCII digits only: "١٢..." is no personnummer
_SHORT: Final = re.compile(r"^(\d{6})([-+]?)(\d{4})$", re.ASCII)
SHAPED: Final = re.compile(r"(?<!\d)(?:\d{8}|\d{6})[-+]?\d{4}(?!\d)")
"""A personnummer-shaped number anywhere in a text (check digit not checked): what logs redact."""


class PersonnummerError(ValueError):
    """An invalid personnummer; the message never contains the number."""


def luhn_ok(ten_digits: str) -> bool:
    """True when the last of the ten digits is the Luhn check digit of the first nine."""
    total = 0
    for i, ch in enumerate(ten_digits[:9]):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10 == int(ten_digits[9])


@dataclass(frozen=True)
class Personnummer:
    """A valid, normalised personnummer or samordningsnummer. ``repr`` is masked."""

    value: str = field(repr=False)
    """12 digits ``YYYYMMDDNNNN``."""

    def __repr__(self) -> str:
        return "Personnummer(************)"

    __str__ = __repr__

    @property
    def is_coordination_number(self) -> bool:
        """True for a samordningsnummer (day + 60)."""
        return int(self.value[6:8]) > 60

    @property
    def birth_date(self) -> date:
        """Date of birth (for a samordningsnummer: the day with 60 subtracted)."""
        day = int(self.value[6:8])
        return date(int(self.value[:4]), int(self.value[4:6]), day - 60 if day > 60 else day)

    def age_on(self, on: date) -> int:
        """Age in whole years on ``on``."""
        born = self.birth_date
        return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def parse(text: str, today: date | None = None) -> Personnummer:
    """Parse any accepted form; raise :class:`PersonnummerError` (without the number) when invalid.

    ``today`` decides the century of a 10-digit form (default: today's UTC date).
    """
    s = text.strip()
    if m := _LONG.match(s):
        digits = m.group(1) + m.group(2)
    elif m := _SHORT.match(s):
        ref = today or datetime.now(UTC).date()
        yy, sep = int(m.group(1)[:2]), m.group(2)
        year = ref.year - (ref.year - yy) % 100
        mmdd = m.group(1)[2:]
        if _plausible(year, mmdd) and _birth(year, mmdd) > ref:
            year -= 100
        if sep == "+":
            year -= 100
        digits = f"{year:04d}{mmdd}{m.group(3)}"
    else:
        raise PersonnummerError("personnummer has an invalid format")
    if not _plausible(int(digits[:4]), digits[4:8]):
        raise PersonnummerError("personnummer has an invalid date")
    if not luhn_ok(digits[2:]):
        raise PersonnummerError("personnummer has an invalid check digit")
    return Personnummer(digits)


def normalise(text: str) -> str:
    """The 12-digit normal form of a valid personnummer (raises :class:`PersonnummerError`)."""
    return parse(text).value


def age_on(personnummer: str, on: date) -> int:
    """Age in whole years on ``on`` of the person with this (valid) personnummer."""
    return parse(personnummer).age_on(on)


def is_valid(text: str) -> bool:
    """True when ``text`` is a valid personnummer or samordningsnummer in an accepted form."""
    try:
        parse(text)
    except PersonnummerError:
        return False
    return True


def contains_personnummer(text: str) -> bool:
    """True when ``text`` contains something that is a valid personnummer (for scrubbing checks)."""
    return any(is_valid(m.group(0)) for m in SHAPED.finditer(text))


def _birth(year: int, mmdd: str) -> date:
    day = int(mmdd[2:])
    return date(year, int(mmdd[:2]), day - 60 if day > 60 else day)


def _plausible(year: int, mmdd: str) -> bool:
    try:
        _birth(year, mmdd)
    except ValueError:
        return False
    return year >= 1800
