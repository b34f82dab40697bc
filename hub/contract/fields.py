"""Reusable field types of the contract: UTC millisecond timestamps, Avro int ranges, municipality codes.

The set of municipality codes the hub serves is configurable per context
(:func:`municipality_codes`, :func:`set_allowed_municipality_codes`); by default it is the hub settings'
``municipality_codes`` plus ``county_code`` (the six Halland municipalities and ``13``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, date, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, Strict

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_allowed: ContextVar[frozenset[str] | None] = ContextVar("allowed_municipality_codes", default=None)
_SCB: Final = re.compile(r"^\d{4}$", re.ASCII)


def allowed_municipality_codes() -> frozenset[str]:
    """The municipality codes (and the county code) valid in the current context."""
    codes = _allowed.get()
    if codes is not None:
        return codes
    global _from_settings
    from hub.settings import get_settings

    settings = get_settings()
    cached = _from_settings
    # Every event asks: the set is built again only when the settings' values are other objects.
    if cached is not None and cached[0] is settings.municipality_codes and cached[1] == settings.county_code:
        return cached[2]
    codes = frozenset([*settings.municipality_codes, settings.county_code])
    _from_settings = (settings.municipality_codes, settings.county_code, codes)
    return codes


_from_settings: tuple[object, str, frozenset[str]] | None = None


def set_allowed_municipality_codes(codes: Iterable[str]) -> Token[frozenset[str] | None]:
    """Set the valid codes for this context; :func:`reset_allowed_municipality_codes` undoes it."""
    return _allowed.set(frozenset(codes))


def reset_allowed_municipality_codes(token: Token[frozenset[str] | None]) -> None:
    """Undo :func:`set_allowed_municipality_codes`."""
    _allowed.reset(token)


@contextmanager
def municipality_codes(codes: Iterable[str]) -> Iterator[frozenset[str]]:
    """``with municipality_codes({"1381", "13"}): ...`` — valid codes inside the block."""
    token = set_allowed_municipality_codes(codes)
    try:
        yield _allowed.get() or frozenset()
    finally:
        reset_allowed_municipality_codes(token)


def _served(code: str) -> str:
    if code not in allowed_municipality_codes():
        raise ValueError("municipality code is not one this hub serves")
    return code


def _scb(code: str) -> str:
    if not _SCB.match(code):
        raise ValueError("municipality code must be 4 digits (SCB)")
    return code


EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
"""The sane range of every contract timestamp: an event in year 999 or 9999 is a typo, not an event (and
would break ISO-week arithmetic downstream)."""


def _utc_millis(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    if not EARLIEST <= value <= LATEST:
        raise ValueError("timestamp outside 1900-01-01 .. 2200-12-31")
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def _no_number(value: object) -> object:
    """A timestamp or date is written as ISO 8601 text: a number (seconds? milliseconds?) or digits-only text
    would be silently read as seconds since 1970 — refused instead."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        raise ValueError("write an ISO 8601 date or timestamp, not a number")
    return value


MunicipalityCode = Annotated[str, AfterValidator(_served)]
"""A code the hub serves (municipality or county code), per :func:`allowed_municipality_codes`."""
ScbCode = Annotated[str, AfterValidator(_scb)]
"""Any 4-digit SCB municipality code (e.g. a home municipality outside the county)."""
UtcMillis = Annotated[AwareDatetime, BeforeValidator(_no_number), AfterValidator(_utc_millis)]
"""A timezone-aware datetime between 1900 and 2200, normalised to UTC and truncated to milliseconds (Avro
timestamp-millis); never a number."""
IsoDate = Annotated[date, BeforeValidator(_no_number)]
"""A calendar date written as ``YYYY-MM-DD`` (never a number)."""
Int32 = Annotated[int, Strict(), Field(ge=INT32_MIN, le=INT32_MAX)]
"""Avro ``int``: a JSON integer only (``"1"``, ``true`` and ``1.0`` are refused, not coerced)."""
Count = Annotated[int, Strict(), Field(ge=0, le=INT32_MAX)]
"""A non-negative Avro ``int`` (strict, as :data:`Int32`)."""
Int64 = Annotated[int, Strict(), Field(ge=INT64_MIN, le=INT64_MAX)]
"""Avro ``long`` (strict, as :data:`Int32`)."""
StrictFlag = Annotated[bool, Strict()]
"""A JSON ``true``/``false`` only (``0``, ``1``, ``"yes"`` are refused, not coerced)."""
