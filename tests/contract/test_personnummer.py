"""Personnummer parsing, normalisation, check digit, samordningsnummer, century rule and age."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given

from hub.contract import personnummer as pnr
from tests.contract.strategies import PERSONNUMMER, personnummer_12

VALID = "191212121212"


@pytest.mark.parametrize("text", ["19121212-1212", "191212121212", "121212+1212", " 19121212-1212 "],
                         ids=["12 digits with dash", "12 digits", "10 digits with plus", "padded"])  # not in reports
def test_accepted_forms_normalise_to_12_digits(text: str) -> None:
    assert pnr.normalise(text) == VALID


def test_century_rule_for_short_forms() -> None:
    today = date(2026, 8, 14)
    assert pnr.parse("121212-1212", today).value == "201212121212"
    assert pnr.parse("121212+1212", today).value == "191212121212"
    assert pnr.parse("8112189876", today).value == "198112189876"


def test_samordningsnummer_day_plus_60() -> None:
    p = pnr.parse("19701063-2391")
    assert p.is_coordination_number
    assert p.birth_date == date(1970, 10, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("19121212-1213", "personnummer has an invalid check digit"),
        ("19121312-1212", "personnummer has an invalid date"),
        ("1912121-1212", "personnummer has an invalid format"),
        ("abc", "personnummer has an invalid format"),
    ],
)
def test_invalid_numbers_are_refused_without_echoing_them(text: str, message: str) -> None:
    with pytest.raises(pnr.PersonnummerError) as info:
        pnr.parse(text)
    assert str(info.value) == message
    assert "1212" not in str(info.value)


def test_age_on() -> None:
    number = personnummer_12(date(2008, 12, 31), 42)
    assert pnr.age_on(number, date(2026, 12, 30)) == 17
    assert pnr.age_on(number, date(2026, 12, 31)) == 18
    assert pnr.parse(VALID).age_on(date(2026, 12, 12)) == 114


def test_repr_is_masked() -> None:
    assert "1212" not in repr(pnr.parse(VALID))


def test_contains_personnummer() -> None:
    assert pnr.contains_personnummer("bad input for 19121212-1212 at offset 3")
    assert not pnr.contains_personnummer("offset 1723456789012 partition 3")


@given(PERSONNUMMER)
def test_generated_numbers_are_valid_and_one_digit_off_is_not(number: str) -> None:
    assert pnr.normalise(number) == number
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert not pnr.is_valid(wrong)
