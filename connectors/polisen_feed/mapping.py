"""Pure mapping of one raw police event (``/api/events`` object) to a :class:`PoliceNotice`.

No I/O except :func:`load_municipalities`, which reads the municipality CSV once at start-up.

Location rule
    Before January 2026 ``location.name`` is the municipality. Since then it is the county
    (``Hallands län``) and the municipality is only the LAST comma-separated part of ``name``
    (``"13 augusti 17.35, Knivlagen, Halmstad"``). So: if ``location.name`` is a known municipality, use it;
    if it is the county, use the last part of ``name`` when that is a known municipality; otherwise the
    notice is county-level. Summaries (``Sammanfattning …``) and ``Övrigt`` are always county-level.
    County-level notices get the county code (``"13"``) and name (``"Hallands län"``).
    An event whose ``location.name`` is neither the county nor one of its municipalities raises
    :class:`OutsideRegionError` (a :class:`FeedParseError`), so callers can skip it deliberately.

Times
    ``datetime`` (publication) is ``YYYY-MM-DD H:mm:ss ±HH:MM`` with an hour that is not always
    zero-padded. The incident time is at the start of ``name`` (``"14 augusti 13.05"`` or ``"01 maj 08:32"``);
    the year is not given and is taken as the year that puts the incident closest to publication (so a
    ``"31 december 23.10"`` event published on 1 January belongs to the previous year). It is local time
    in Europe/Stockholm. If it cannot be parsed, ``occurred_at`` is ``published_at`` and
    ``occurred_at_from_name`` is False.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.polisen_feed.categories import COUNTY_LEVEL_TYPES, classify

DEFAULT_SITE: Final = "https://polisen.se"
DEFAULT_COUNTY_CODE: Final = "13"
DEFAULT_COUNTY_NAME: Final = "Hallands län"

SWEDISH_MONTHS: Final[Mapping[str, int]] = {
    "januari": 1,
    "februari": 2,
    "mars": 3,
    "april": 4,
    "maj": 5,
    "juni": 6,
    "juli": 7,
    "augusti": 8,
    "september": 9,
    "oktober": 10,
    "november": 11,
    "december": 12,
}

_PUBLISHED = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2}) (\d{1,2}):(\d{2}):(\d{2}) ([+-])(\d{2}):(\d{2})\s*$")
_OCCURRED = re.compile(r"^\s*(\d{1,2})\s+([^\W\d_]+)\s+(\d{1,2})[.:](\d{2})(?!\d)")

try:
    _LOCAL_TZ: tzinfo | None = ZoneInfo("Europe/Stockholm")
except ZoneInfoNotFoundError:  # pragma: no cover - system without tz database
    _LOCAL_TZ = None


class FeedParseError(ValueError):
    """A raw event is malformed; the message names the field and the reason."""


class OutsideRegionError(FeedParseError):
    """The event's location is neither the configured county nor one of its municipalities."""


@dataclass(frozen=True, slots=True)
class PoliceNotice:
    police_id: int
    police_type: str
    category: str
    known_type: bool
    title: str
    summary: str
    url: str
    location_name: str
    gps: str | None
    published_at: datetime
    occurred_at: datetime
    occurred_at_from_name: bool
    municipality_code: str
    municipality_name: str
    county_level: bool


def load_municipalities(csv_path: str | Path) -> dict[str, str]:
    """``{municipality_name: municipality_code}`` from a CSV with those two columns (halland-kommuner.csv)."""
    path = Path(csv_path)
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "municipality_name" not in fields or "municipality_code" not in fields:
            raise ValueError(f"{path}: needs columns municipality_code and municipality_name, has {fields}")
        result: dict[str, str] = {}
        for row in reader:
            name = (row["municipality_name"] or "").strip()
            code = (row["municipality_code"] or "").strip()
            if not name or not re.fullmatch(r"\d{4}", code):
                raise ValueError(f"{path}: bad row {row!r}")
            result[name] = code
    return result


def parse_published(value: str) -> datetime:
    """Parse the feed's ``datetime`` (``YYYY-MM-DD H:mm:ss ±HH:MM``, hour may be unpadded)."""
    m = _PUBLISHED.match(value)
    if m is None:
        raise FeedParseError(f"datetime: {value!r} is not 'YYYY-MM-DD H:mm:ss ±HH:MM'")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    sign = 1 if m.group(7) == "+" else -1
    offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
    if offset >= timedelta(hours=24):
        raise FeedParseError(f"datetime: {value!r} has an impossible UTC offset")
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone(sign * offset))
    except ValueError as exc:
        raise FeedParseError(f"datetime: {value!r} is not a valid date/time ({exc})") from None


def parse_occurred(name: str, published_at: datetime) -> datetime | None:
    """Incident time from the start of ``name``; None when it cannot be parsed."""
    m = _OCCURRED.match(name)
    if m is None:
        return None
    month = SWEDISH_MONTHS.get(m.group(2).lower())
    if month is None:
        return None
    day, hour, minute = int(m.group(1)), int(m.group(3)), int(m.group(4))
    tz = _LOCAL_TZ if _LOCAL_TZ is not None else published_at.tzinfo
    candidates: list[datetime] = []
    for year in (published_at.year - 1, published_at.year, published_at.year + 1):
        try:
            candidates.append(datetime(year, month, day, hour, minute, tzinfo=tz))
        except ValueError:  # 29 februari in a non-leap year, 24.00, 31 april …
            continue
    if not candidates:
        return None
    return min(candidates, key=lambda dt: abs(dt - published_at))


def _field(raw: Mapping[str, Any], key: str, kind: type, *, where: str = "") -> Any:
    label = f"{where}{key}"
    if key not in raw:
        raise FeedParseError(f"{label}: missing")
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FeedParseError(f"{label}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _absolute_url(url: str, site: str) -> str:
    url = url.strip()
    if url.startswith(("https://", "http://")):
        return url
    if not url.startswith("/"):
        raise FeedParseError(f"url: {url!r} is neither absolute nor site-relative")
    return site.rstrip("/") + url


def parse_event(
    raw: Mapping[str, Any],
    *,
    municipalities: Mapping[str, str],
    county_code: str = DEFAULT_COUNTY_CODE,
    county_name: str = DEFAULT_COUNTY_NAME,
    site: str = DEFAULT_SITE,
) -> PoliceNotice:
    """Map one raw feed event to a :class:`PoliceNotice` (raises :class:`FeedParseError` if malformed)."""
    if not isinstance(raw, Mapping):
        raise FeedParseError(f"event: expected an object, got {type(raw).__name__}")
    police_id: int = _field(raw, "id", int)
    if police_id <= 0:
        raise FeedParseError(f"id: {police_id} is not a positive integer")
    where = f"event {police_id}: "
    try:
        published_at = parse_published(_field(raw, "datetime", str))
        name: str = _field(raw, "name", str)
        if not name.strip():
            raise FeedParseError("name: empty")
        summary: str = _field(raw, "summary", str)
        url = _absolute_url(_field(raw, "url", str), site)
        police_type: str = _field(raw, "type", str).strip()
        if not police_type:
            raise FeedParseError("type: empty")
        location = _field(raw, "location", Mapping)
        location_name: str = _field(location, "name", str, where="location.").strip()
        if not location_name:
            raise FeedParseError("location.name: empty")
        gps_raw = location.get("gps")
        if gps_raw is not None and not isinstance(gps_raw, str):
            raise FeedParseError(f"location.gps: expected str or null, got {type(gps_raw).__name__}")
        gps = (gps_raw.strip() or None) if gps_raw is not None else None
    except FeedParseError as exc:
        raise FeedParseError(f"{where}{exc}") from None

    category, known_type = classify(police_type, summary, name)

    last_part = name.rsplit(",", 1)[-1].strip()
    if location_name in municipalities:
        muni_name: str | None = location_name
    elif location_name == county_name:
        muni_name = last_part if last_part in municipalities else None
    else:
        raise OutsideRegionError(
            f"{where}location.name: {location_name!r} is neither {county_name!r} "
            "nor one of its municipalities"
        )
    county_level = muni_name is None or police_type in COUNTY_LEVEL_TYPES
    if county_level or muni_name is None:
        municipality_code, municipality_name = county_code, county_name
    else:
        municipality_code, municipality_name = municipalities[muni_name], muni_name

    occurred = parse_occurred(name, published_at)
    return PoliceNotice(
        police_id=police_id,
        police_type=police_type,
        category=category,
        known_type=known_type,
        title=name,
        summary=summary,
        url=url,
        location_name=location_name,
        gps=gps,
        published_at=published_at,
        occurred_at=occurred if occurred is not None else published_at,
        occurred_at_from_name=occurred is not None,
        municipality_code=municipality_code,
        municipality_name=municipality_name,
        county_level=county_level,
    )
