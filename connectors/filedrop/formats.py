"""File-drop formats: file names, reading CSV/JSON exports into raw rows, column specs and value parsers.

Pure: no Kafka. :mod:`connectors.filedrop.mapping` turns the raw rows into contract events.

Files
    A dropped file is ``<name>.csv`` or ``<name>.json`` (:func:`validate_file_name` refuses anything
    else, and every name that could escape the drop folder). Both hold one record per row; the ``kind``
    column selects the row's format (:data:`KINDS`), so one file may mix kinds of one agency.

    * CSV: UTF-8 (a byte-order mark is allowed), a header row, ``,`` or ``;`` as delimiter (taken from
      the header line), quotes ``"``. Row numbers are spreadsheet rows: the header is row 1, the first
      record row 2 (blank lines count, a quoted multi-line cell is one row).
    * JSON: UTF-8, a top-level array of objects, or an object ``{"rows": [...]}``. Row numbers are
      1-based positions in the array. Values may be strings or native JSON numbers, booleans, arrays
      (``needs``) and null (= empty).

Values
    Dates ``YYYY-MM-DD``; timestamps ISO-8601 (``2026-03-02T14:05:00+01:00`` or ``...Z``; without an
    offset they are local time in Europe/Stockholm); counts are non-negative integers; decimals take
    ``.`` or ``,``; booleans ``true/false``, ``yes/no``, ``ja/nej``, ``1/0``; lists (``needs``) are
    ``|``-separated in CSV or a JSON array. Empty cells are absent values.

Error messages produced here never contain a cell's value (only column names, which are checked too).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.contract import personnummer as pnr
from hub.contract.envelope import DataClass, Event
from hub.contract.events import (
    ChildConcernReport,
    ConsentGiven,
    ConsentWithdrawn,
    ProbationEnded,
    ProbationStarted,
    ReleaseScheduled,
    SigReferral,
    WatchAreaRegistered,
    YouthActivity,
)

try:
    LOCAL_TZ: tzinfo = ZoneInfo("Europe/Stockholm")
except ZoneInfoNotFoundError:  # pragma: no cover - system without a tz database
    LOCAL_TZ = timezone(timedelta(hours=1))

SUFFIXES: Final = (".csv", ".json")
MAX_NAME_LEN: Final = 200
MAX_FILE_BYTES: Final = 64 * 1024 * 1024
MAX_EVENT_BYTES: Final = 1_000_000
"""Largest encoded event a row may become: Kafka takes at most 1 MiB per message by default (producer and
broker), less room for the record batch around it. A larger row is rejected, never retried."""
LIST_SEPARATOR: Final = "|"

ColumnType = Literal["text", "code", "date", "timestamp", "count", "decimal", "bool", "list", "personnummer"]


class FileNameError(ValueError):
    """A dropped file's name is refused (possible path traversal, hidden file or wrong suffix)."""


class FileFormatError(ValueError):
    """The file as a whole cannot be read (encoding, JSON syntax, missing header or ``kind`` column)."""


class CellError(ValueError):
    """One cell is invalid; the message names the column and the problem, never the value."""


# -- names and hashes -----------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_file_name(name: str) -> str:
    """Return ``name`` when it is an acceptable dropped-file name, else raise :class:`FileNameError`.

    Refused: empty or over-long names, ``..`` anywhere, ``/``, ``\\``, NUL or other control characters,
    a leading ``.``, and any suffix other than ``.csv`` / ``.json`` (case-insensitive).
    """
    if not name:
        raise FileNameError("file name is empty")
    if len(name) > MAX_NAME_LEN:
        raise FileNameError(f"file name is longer than {MAX_NAME_LEN} characters")
    if "\x00" in name:
        raise FileNameError("file name contains NUL")
    if "/" in name or "\\" in name:
        raise FileNameError("file name contains a path separator")
    if ".." in name:
        raise FileNameError("file name contains '..'")
    if name.startswith("."):
        raise FileNameError("file name starts with '.'")
    if _CONTROL.search(name):
        raise FileNameError("file name contains a control character")
    if not name.lower().endswith(SUFFIXES) or name.lower() in SUFFIXES:
        raise FileNameError("file name must end with .csv or .json")
    return name


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- reading --------------------------------------------------------------------------------------------

Value = str | int | float | bool | list[object] | dict[str, object] | None
"""A raw cell: CSV cells are strings; JSON cells keep their JSON type."""


@dataclass(frozen=True)
class RawRow:
    """One record as read from the file: its row number and cells by column name."""

    row: int
    cells: Mapping[str, Value]
    extra_values: bool = False
    """CSV: the record has more values than the header has columns."""


def read_rows(data: bytes, suffix: str) -> list[RawRow]:
    """Raw rows of a CSV or JSON file's bytes (``suffix`` ``.csv`` or ``.json``)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileFormatError("file is not UTF-8") from None
    if suffix.lower() == ".csv":
        return _read_csv(text)
    if suffix.lower() == ".json":
        return _read_json(text)
    raise FileFormatError("file must be .csv or .json")


def _read_csv(text: str) -> list[RawRow]:
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', strict=True)
    try:
        records = list(reader)
    except csv.Error:
        raise FileFormatError("CSV is malformed (unbalanced quotes)") from None
    if not records or not any(cell.strip() for cell in records[0]):
        raise FileFormatError("CSV has no header row")
    header = [h.strip() for h in records[0]]
    _check_header(header)
    rows = []
    for i, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue  # a blank line
        cells: dict[str, Value] = {h: (record[j] if j < len(record) else None) for j, h in enumerate(header)}
        extra = any(cell.strip() for cell in record[len(header) :])
        rows.append(RawRow(i, cells, extra))
    return rows


def _check_header(header: list[str]) -> None:
    if len(set(header)) != len(header):
        raise FileFormatError("CSV header repeats a column")
    if "kind" not in header:
        raise FileFormatError("file has no 'kind' column")


def _read_json(text: str) -> list[RawRow]:
    try:
        data = json.loads(text)
    except ValueError:
        raise FileFormatError("file is not valid JSON") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list):
        raise FileFormatError('JSON must be an array of objects or {"rows": [...]}')
    rows = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            rows.append(RawRow(i, {}))
            continue
        rows.append(RawRow(i, {str(k): v for k, v in item.items()}))
    return rows


# -- column specs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a row format."""

    name: str
    type: ColumnType
    required: bool
    doc: str


@dataclass(frozen=True)
class KindFormat:
    """The format of one row kind: which agency sends it, the event it becomes and its own columns."""

    kind: str
    agency: str
    model: type[Event]
    data_class: DataClass
    subject: bool
    """True: the ``personnummer`` column is required; False: it must be empty."""
    columns: tuple[Column, ...]
    """The kind's own columns (payload fields of the same names)."""

    @property
    def event_type(self) -> str:
        return self.model.EVENT_TYPE


def _c(name: str, type_: ColumnType, required: bool, doc: str) -> Column:
    return Column(name, type_, required, doc)


COMMON_COLUMNS: Final[tuple[Column, ...]] = (
    _c("kind", "text", True, "Row kind (selects the format)."),
    _c("municipality_code", "code", True, "SCB code of the municipality (e.g. `1381`)."),
    _c("occurred_at", "timestamp", True, "When it happened (ISO-8601)."),
    _c("recorded_at", "timestamp", False, "When the source system recorded it; default `occurred_at`."),
    _c("area", "text", False, "Named area within the municipality."),
    _c("personnummer", "personnummer", False, "The person (any accepted form); only kinds about a person."),
)

KINDS: Final[Mapping[str, KindFormat]] = {
    k.kind: k
    for k in (
        KindFormat(
            "youth_activity",
            "kommun",
            YouthActivity,
            DataClass.aggregated,
            False,
            (
                _c("activity_id", "text", True, "The activity's id in the source system."),
                _c("activity_kind", "text", True, "E.g. `open_youth_centre`, `sports_night`."),
                _c("participants", "count", True, "Participants in total."),
                _c("participants_13_17", "count", True, "Of whom aged 13–17."),
                _c("participants_18_24", "count", True, "Of whom aged 18–24."),
                _c("leader_hours", "decimal", False, "Leader hours spent."),
                _c("participants_girls", "count", False, "Of whom girls."),
            ),
        ),
        KindFormat(
            "child_concern_report",
            "kommun",
            ChildConcernReport,
            DataClass.personal_statutory,
            True,
            (
                _c("case_id", "text", True, "Social services' case id."),
                _c("reporter_role", "text", True, "E.g. `school`, `preschool`, `health_care`."),
                _c("concern_kind", "text", True, "E.g. `violence_in_home`, `honour_related`, `neglect`."),
                _c("description", "text", True, "What the reporter observed."),
            ),
        ),
        KindFormat(
            "consent_given",
            "kommun",
            ConsentGiven,
            DataClass.personal_consent,
            True,
            (
                _c("consent_id", "text", True, "The consent's id."),
                _c("scope", "text", True, "`sig`, `release_planning` or `socialtjanst_info_sharing`."),
                _c("signed_by", "text", True, "Who signed (e.g. `individual`, `individual_and_guardian`)."),
                _c("guardian_consent", "bool", True, "A guardian consented too (required under 18)."),
                _c("valid_from", "date", True, "First day of validity."),
                _c("valid_until", "date", False, "Last day of validity."),
            ),
        ),
        KindFormat(
            "consent_withdrawn",
            "kommun",
            ConsentWithdrawn,
            DataClass.personal_consent,
            True,
            (
                _c("consent_id", "text", True, "The withdrawn consent's id."),
                _c("scope", "text", True, "Its scope."),
                _c("withdrawn_at", "timestamp", False, "When it was withdrawn; default `occurred_at`."),
                _c("reason", "text", False, "Why, if given."),
            ),
        ),
        KindFormat(
            "sig_referral",
            "kommun",
            SigReferral,
            DataClass.personal_consent,
            True,
            (
                _c("case_id", "text", True, "The referral's case id."),
                _c("referred_by", "text", True, "Referring party (e.g. `socialtjanst`, `polisen`, `skola`)."),
                _c("reason", "text", True, "Reason for the referral."),
            ),
        ),
        KindFormat(
            "watch_area_registered",
            "kommun",
            WatchAreaRegistered,
            DataClass.aggregated,
            False,
            (
                _c("area_id", "text", True, "The watch area's id."),
                _c("area_name", "text", True, "Its name."),
                _c("households", "count", False, "Households in the area."),
                _c("contact_count", "count", True, "Number of contact persons."),
                _c("registered_on", "date", True, "Registration date."),
            ),
        ),
        KindFormat(
            "release_scheduled",
            "kriminalvarden",
            ReleaseScheduled,
            DataClass.personal_consent,
            True,
            (
                _c("case_id", "text", True, "Kriminalvården's case id."),
                _c("home_municipality_code", "code", True, "SCB code of the home municipality."),
                _c("planned_release_date", "date", True, "Planned release date."),
                _c("institution", "text", True, "The prison (anstalt)."),
                _c("needs", "list", False, "Needs after release (`housing|employment`; JSON: an array)."),
            ),
        ),
        KindFormat(
            "probation_started",
            "kriminalvarden",
            ProbationStarted,
            DataClass.personal_consent,
            True,
            (
                _c("case_id", "text", True, "Case id."),
                _c("start_date", "date", True, "First day of supervision."),
                _c("end_date", "date", False, "Planned last day."),
                _c("supervision_unit", "text", True, "The probation office (frivård)."),
            ),
        ),
        KindFormat(
            "probation_ended",
            "kriminalvarden",
            ProbationEnded,
            DataClass.personal_consent,
            True,
            (
                _c("case_id", "text", True, "Case id."),
                _c("end_date", "date", True, "Last day of supervision."),
                _c("reason", "text", True, "E.g. `completed`, `revoked`, `transferred`."),
            ),
        ),
    )
}
"""Every row kind by name."""

AGENCIES: Final[tuple[str, ...]] = ("kommun", "kriminalvarden")
"""Agencies that may drop files."""


def kinds_of(agency: str) -> list[str]:
    """The row kinds an agency may send."""
    return [k.kind for k in KINDS.values() if k.agency == agency]


def columns_markdown(kind: str) -> str:
    """A Markdown table of a kind's own columns (for docs/filedrop.md)."""
    lines = ["| column | type | required | meaning |", "|---|---|---|---|"]
    for col in KINDS[kind].columns:
        lines.append(f"| `{col.name}` | {col.type} | {'yes' if col.required else 'no'} | {col.doc} |")
    return "\n".join(lines)


# -- value parsers --------------------------------------------------------------------------------------

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COUNT = re.compile(r"^\+?\d{1,10}$")
_DECIMAL = re.compile(r"^\d{1,9}(?:[.,]\d{1,6})?$")
_CODE = re.compile(r"^\d{4}$")
_SAFE_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
_TRUE: Final = frozenset({"true", "yes", "ja", "1", "y", "j"})
_FALSE: Final = frozenset({"false", "no", "nej", "0", "n"})


def safe_token(text: object) -> str | None:
    """``text`` when it is a short identifier-like token that is safe to echo in a reason, else None."""
    if isinstance(text, str) and _SAFE_TOKEN.match(text) and not pnr.contains_personnummer(text):
        return text
    return None


def is_empty(value: Value) -> bool:
    """True for an absent cell: None, an empty or blank string, or an empty JSON array."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list) and not value


def parse_value(col: Column, value: Value) -> object:
    """The typed value of a non-empty cell, or :class:`CellError` naming the column."""
    name = col.name
    if col.type == "list":
        return _parse_list(name, value)
    if isinstance(value, list | dict):
        raise CellError(f"column {name}: expected a single value, not a list or object")
    if col.type == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise CellError(f"column {name}: not a boolean (true/false, yes/no, ja/nej, 1/0)")
    if isinstance(value, bool):
        raise CellError(f"column {name}: expected {col.type}, not a boolean")
    if col.type == "count":
        if isinstance(value, int):
            if value < 0:
                raise CellError(f"column {name}: must not be negative")
            return value
        text = str(value).strip()
        if not _COUNT.match(text):
            raise CellError(f"column {name}: not a non-negative whole number")
        return int(text)
    if col.type == "decimal":
        if isinstance(value, int | float):
            number = float(value)
        else:
            text = str(value).strip()
            if not _DECIMAL.match(text):
                raise CellError(f"column {name}: not a non-negative decimal number")
            number = float(text.replace(",", "."))
        if number < 0 or number != number or number in (float("inf"), float("-inf")):
            raise CellError(f"column {name}: not a non-negative decimal number")
        return number
    text = str(value).strip()
    if col.type == "text":
        if not isinstance(value, str | int):
            raise CellError(f"column {name}: expected text")
        return text
    if col.type == "code":
        if not _CODE.match(text):
            raise CellError(f"column {name}: not a 4-digit SCB municipality code")
        return text
    if col.type == "date":
        return parse_date(name, text)
    if col.type == "timestamp":
        return parse_timestamp(name, text)
    if col.type == "personnummer":
        try:
            return pnr.parse(text).value
        except pnr.PersonnummerError as exc:
            raise CellError(f"column {name}: {exc}") from None
    raise AssertionError(f"unhandled column type {col.type}")  # pragma: no cover


def parse_date(name: str, text: str) -> date:
    """A ``YYYY-MM-DD`` date."""
    if not _DATE.match(text):
        raise CellError(f"column {name}: not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CellError(f"column {name}: not a valid calendar date") from None


def parse_timestamp(name: str, text: str) -> datetime:
    """An ISO-8601 timestamp; without an offset it is Europe/Stockholm local time."""
    if len(text) < 16 or not _DATE.match(text[:10]) or text[10] not in "T ":
        raise CellError(f"column {name}: not an ISO-8601 timestamp (YYYY-MM-DDTHH:MM[:SS][±HH:MM|Z])")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CellError(f"column {name}: not an ISO-8601 timestamp (YYYY-MM-DDTHH:MM[:SS][±HH:MM|Z])") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=LOCAL_TZ)
    return value


def _parse_list(name: str, value: Value) -> list[str]:
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise CellError(f"column {name}: list items must be text")
        items = [str(v).strip() for v in value]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(LIST_SEPARATOR)]
    else:
        raise CellError(f"column {name}: expected a list")
    return [v for v in items if v]
