"""A delivery's projected fields are JSON texts; the hot path writes the common ones with orjson, which must give
exactly the text the standard library gave (receivers and the audit's field lists compare them)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic_core import to_jsonable_python

from hub.contract import envelope, events, outputs
from hub.flows.minimise import json_text

CONTRACT_ENUMS = [v for m in (envelope, events, outputs) for v in vars(m).values()
                  if isinstance(v, type) and issubclass(v, StrEnum) and v is not StrEnum]  # fmt: skip


class Colour(StrEnum):
    red = "röd"


def reference(value: Any) -> str:
    return json.dumps(to_jsonable_python(value), ensure_ascii=False)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.text(st.characters(codec="utf-8")) | st.integers() | st.booleans() | st.none())
@example('\x7f\x00\x1f"\\\u2028\U0001f600 åäö')
@example("\ud800")  # a lone surrogate (orjson refuses it)
@example(2**64)  # beyond orjson's integers
@example(-(2**63))
def test_json_text_is_the_standard_librarys(value: Any) -> None:
    assert json_text(value) == reference(value)


def test_other_values_keep_the_standard_form() -> None:
    for value in (Colour.red, 1.5, date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, tzinfo=UTC), ["a", 1], {"k": None}):
        assert json_text(value) == reference(value)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones()) | st.dates())
def test_datetimes_and_dates_keep_the_standard_form(value: Any) -> None:
    assert json_text(value) == reference(value)


def test_every_member_of_the_contracts_enums_keeps_the_standard_form() -> None:
    members = [m for enum in CONTRACT_ENUMS for m in enum]
    assert len(members) > 20
    for member in [*members, *members]:  # the second time from the per-member cache
        assert json_text(member) == reference(member)
