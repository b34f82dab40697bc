"""Personnummer for simulated people, drawn ONLY from a fixed test series.

The series
    A number belongs to the simulator's test series when, in its 12-digit form ``YYYYMMDDNNNC``:

    * ``YYYYMMDD`` is a real calendar date from 1900-01-01 to 2099-12-31 (the birth date; never a
      samordningsnummer, i.e. the day has no 60 added);
    * ``NNN`` (the födelsenummer) is 980–999, the range that Skatteverket's test-personnummer
      convention keeps for test numbers (the Swedish Tax Agency publishes its test personnummer as open
      data; the 980–999 serials are the range this project relies on never being given to real people);
    * ``C`` is the correct Luhn (modulus 10, weights 2-1) check digit over the ten-digit form, so every
      number passes :func:`hub.contract.personnummer.parse`.

    Nothing else is ever generated: :func:`make_test_personnummer` refuses a serial outside 980–999 and
    :func:`is_test_personnummer` tells whether any given number is in the series (tests assert it for
    every number the simulator emits). If a deployment needs the strict guarantee of Skatteverket's
    published list, replace :func:`make_test_personnummer` with a look-up in that list; the series check stays.

Functions
    :func:`make_test_personnummer` (one number for a birth date and serial), :func:`random_test_personnummer`
    (a random number for a person of a given age on a date), :func:`birth_date_for_age`,
    :func:`is_test_personnummer`.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Final

from hub.contract import personnummer as pnr

SERIAL_MIN: Final = 980
"""Lowest födelsenummer of the test series."""
SERIAL_MAX: Final = 999
"""Highest födelsenummer of the test series."""
FIRST_BIRTH_DATE: Final = date(1900, 1, 1)
"""Earliest birth date of the test series."""
LAST_BIRTH_DATE: Final = date(2099, 12, 31)
"""Latest birth date of the test series."""


class NotInTestSeriesError(ValueError):
    """A request for a number outside the test series."""


def _check_digit(nine: str) -> str:
    for digit in "0123456789":
        if pnr.luhn_ok(nine + digit):
            return digit
    raise AssertionError("unreachable: one of ten digits is always the Luhn check digit")


def make_test_personnummer(born: date, serial: int) -> str:
    """The 12-digit test personnummer ``YYYYMMDDNNNC`` for a birth date and a serial 980–999."""
    if not SERIAL_MIN <= serial <= SERIAL_MAX:
        raise NotInTestSeriesError(f"serial must be {SERIAL_MIN}–{SERIAL_MAX} (the test series)")
    if not FIRST_BIRTH_DATE <= born <= LAST_BIRTH_DATE:
        raise NotInTestSeriesError(f"birth date must be {FIRST_BIRTH_DATE}–{LAST_BIRTH_DATE} (the test series)")
    nine = f"{born:%y%m%d}{serial:03d}"
    return f"{born:%Y%m%d}{serial:03d}{_check_digit(nine)}"


def is_test_personnummer(text: str) -> bool:
    """True when ``text`` is a valid personnummer (any accepted form) in the test series."""
    try:
        parsed = pnr.parse(text)
    except pnr.PersonnummerError:
        return False
    value = parsed.value
    if parsed.is_coordination_number:
        return False
    if not SERIAL_MIN <= int(value[8:11]) <= SERIAL_MAX:
        return False
    return FIRST_BIRTH_DATE <= parsed.birth_date <= LAST_BIRTH_DATE


def birth_date_for_age(rng: random.Random, age: int, on: date) -> date:
    """A random birth date of someone who is exactly ``age`` whole years old on ``on``."""
    if age < 0:
        raise ValueError("age must not be negative")
    latest = _years_before(on, age)  # the birthday falls on ``on`` at the latest
    earliest = _years_before(on, age + 1) + timedelta(days=1)
    return earliest + timedelta(days=rng.randint(0, (latest - earliest).days))


def random_test_personnummer(rng: random.Random, *, on: date, min_age: int, max_age: int) -> str:
    """A random test personnummer of someone aged ``min_age``–``max_age`` (inclusive) on ``on``."""
    if min_age > max_age:
        raise ValueError("min_age is greater than max_age")
    born = birth_date_for_age(rng, rng.randint(min_age, max_age), on)
    return make_test_personnummer(born, rng.randint(SERIAL_MIN, SERIAL_MAX))


def _years_before(on: date, years: int) -> date:
    try:
        return on.replace(year=on.year - years)
    except ValueError:  # 29 February in a year that has none
        return on.replace(year=on.year - years, day=28)
