"""Map the rows of a dropped CSV/JSON export to contract events (pure: no Kafka).

``parse_file(path, agency, source_unit=...)`` reads one file and returns a :class:`FileResult`: the events
with their row numbers, and a :class:`Reject` (row number and reason) for every row that could not be
mapped. Row formats and value syntax: :mod:`connectors.filedrop.formats` and ``docs/filedrop.md``.

Guarantees
    * The event id of a row is ``uuid5(FILEDROP_NAMESPACE, "<file sha256>:<row>")``: delivering the same
      file again gives the same ids, so the hub's deduplication drops the repeats.
    * A reject's reason names the row's problem (column and what is wrong) and never contains a cell
      value that could identify a person: no personnummer, no free text. Reasons are scrubbed of long
      digit runs as a last line of defence.
    * The file name is checked first (:func:`~connectors.filedrop.formats.validate_file_name`); a refused
      name raises :class:`~connectors.filedrop.formats.FileNameError` and nothing is read.
    * A file that cannot be read at all (not UTF-8, bad JSON, no ``kind`` column, too large) gives one
      reject with row 0 and no events.
    * Every event returned can be published: a row whose event cannot be encoded (text that is no valid
      Unicode) or would be larger than Kafka takes (:data:`~connectors.filedrop.formats.MAX_EVENT_BYTES`)
      is rejected — publishing it could only fail, again and again.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid5

from pydantic import ValidationError

from connectors.filedrop.formats import (
    AGENCIES,
    COMMON_COLUMNS,
    KINDS,
    MAX_EVENT_BYTES,
    MAX_FILE_BYTES,
    CellError,
    Column,
    FileFormatError,
    RawRow,
    file_sha256,
    is_empty,
    parse_value,
    read_rows,
    safe_token,
    validate_file_name,
)
from hub.contract.envelope import Envelope, Event
from hub.contract.errors import ContractError
from hub.contract.personnummer import PersonnummerError
from hub.contract.serde import default_serde

FILEDROP_NAMESPACE: Final = UUID("5d3c8f0e-6a1b-5b7e-9f3a-2c4e8d1a7b60")
"""The uuid5 namespace of file-drop event ids (fixed forever: changing it changes every id)."""

SCHEMA_VERSIONS: Final[Mapping[str, int]] = {"kommun.youth_activity": 2}
"""The schema version written per event type when it is not 1 (the latest in ``schemas/``)."""

__all__ = [
    "FILEDROP_NAMESPACE",
    "FileResult",
    "Reject",
    "RowError",
    "event_id_for",
    "file_sha256",
    "map_row",
    "parse_bytes",
    "parse_file",
    "rejects_path",
    "scrub",
    "write_rejects_csv",
]

_COMMON: Final[Mapping[str, Column]] = {c.name: c for c in COMMON_COLUMNS}
_LONG_DIGITS: Final = re.compile(r"\d[\d\s+\-]{4,}\d")


@dataclass(frozen=True)
class Reject:
    """A row that did not become an event: its row number (0 = the whole file) and why."""

    row: int
    reason: str


@dataclass
class FileResult:
    """The outcome of one dropped file."""

    name: str
    agency: str
    sha256: str
    events: list[tuple[int, Event]] = field(default_factory=list)
    """``(row number, event)`` in file order."""
    rejects: list[Reject] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.rejects


class RowError(ValueError):
    """A row cannot be mapped; the message is safe to show (no personal data)."""


def event_id_for(sha256: str, row: int) -> UUID:
    """The deterministic event id of a row of a file with this SHA-256."""
    return uuid5(FILEDROP_NAMESPACE, f"{sha256}:{row}")


def scrub(reason: str) -> str:
    """``reason`` with every run of six or more digits (with separators) replaced by ``[number]``."""
    return _LONG_DIGITS.sub(lambda m: "[number]" if sum(c.isdigit() for c in m[0]) >= 6 else m[0], reason)


# -- rows -----------------------------------------------------------------------------------------------


def map_row(raw: RawRow, agency: str, *, source_unit: str, sha256: str) -> Event:
    """The event of one raw row, or :class:`RowError` with a safe reason."""
    cells = raw.cells
    if not cells:
        raise RowError("row is empty or not an object")
    kind_value = cells.get("kind")
    if is_empty(kind_value):
        raise RowError("column kind is missing or empty")
    if not isinstance(kind_value, str) or kind_value.strip() not in KINDS:
        token = safe_token(kind_value.strip() if isinstance(kind_value, str) else None)
        raise RowError(f"unknown kind {token!r}" if token else "unknown kind")
    fmt = KINDS[kind_value.strip()]
    if fmt.agency != agency:
        raise RowError(f"kind {fmt.kind} is not sent by agency {agency}")

    errors: list[str] = []
    values: dict[str, object] = {}
    own = {c.name: c for c in fmt.columns}
    for col in (*COMMON_COLUMNS, *fmt.columns):
        if col.name == "kind":
            continue
        required = col.required or (col.name == "personnummer" and fmt.subject)
        value = cells.get(col.name)
        if col.name == "personnummer" and not fmt.subject:
            if not is_empty(value):
                errors.append(f"column personnummer must be empty for kind {fmt.kind} (not about a person)")
            continue
        if is_empty(value):
            if required:
                errors.append(
                    f"missing column {col.name} (required for kind {fmt.kind})"
                    if col.name not in cells
                    else f"column {col.name} is empty (required for kind {fmt.kind})"
                )
            continue
        try:
            values[col.name] = parse_value(col, value)
        except CellError as exc:
            errors.append(str(exc))
        except PersonnummerError:  # pragma: no cover - parse_value converts it
            errors.append(f"column {col.name}: invalid personnummer")
    for name, value in cells.items():
        if name not in _COMMON and name not in own and not is_empty(value):
            token = safe_token(name)
            errors.append(
                f"column {token} is not part of kind {fmt.kind}"
                if token
                else f"a column with an unsafe name is not part of kind {fmt.kind}"
            )
    if raw.extra_values:
        errors.append("row has more values than the header has columns")
    if errors:
        raise RowError("; ".join(errors))

    occurred = values["occurred_at"]
    assert isinstance(occurred, datetime)  # noqa: S101 - guaranteed by the column type
    personnummer = values.get("personnummer")
    subject: dict[str, Any] | None = None
    if isinstance(personnummer, str):
        subject = {"personnummer": personnummer, "birth_year": int(personnummer[:4])}
    payload = {c.name: values[c.name] for c in fmt.columns if c.name in values}
    if fmt.kind == "consent_withdrawn":
        payload.setdefault("withdrawn_at", occurred)
    if fmt.kind == "release_scheduled":
        payload.setdefault("needs", [])
    envelope = {
        "event_id": event_id_for(sha256, raw.row),
        "event_type": fmt.event_type,
        "schema_version": SCHEMA_VERSIONS.get(fmt.event_type, 1),
        "source_agency": agency,
        "source_unit": source_unit,
        "municipality_code": values["municipality_code"],
        "area": values.get("area"),
        "occurred_at": occurred,
        "recorded_at": values.get("recorded_at", occurred),
        "subject": subject,
        "data_class": fmt.data_class,
    }
    try:
        Envelope.model_validate(envelope)  # envelope errors first, with their own field names
        return fmt.model.model_validate({"envelope": envelope, "payload": payload})
    except ValidationError as exc:
        raise RowError(_validation_reason(exc)) from None


_FIELD_TO_COLUMN: Final = {"envelope.municipality_code": "municipality_code", "envelope.area": "area"}


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = ".".join(str(p) for p in err["loc"])
        loc = _FIELD_TO_COLUMN.get(loc, loc.removeprefix("payload."))
        if loc in ("payload", "envelope"):
            loc = ""
        msg = str(err["msg"]).removeprefix("Value error, ").replace("payload.", "")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "row does not meet the event contract"


# -- files ----------------------------------------------------------------------------------------------


def parse_bytes(data: bytes, name: str, agency: str, *, source_unit: str, sha256: str) -> FileResult:
    """Map the content of a file already read (``name`` must be valid; see :func:`parse_file`)."""
    validate_file_name(name)
    if agency not in AGENCIES:
        raise ValueError(f"agency must be one of {', '.join(AGENCIES)}")
    if not source_unit:
        raise ValueError("source_unit must not be empty")
    result = FileResult(name=name, agency=agency, sha256=sha256)
    if len(data) > MAX_FILE_BYTES:
        result.rejects.append(Reject(0, f"file is larger than {MAX_FILE_BYTES} bytes"))
        return result
    try:
        rows = read_rows(data, Path(name).suffix)
    except FileFormatError as exc:
        result.rejects.append(Reject(0, scrub(str(exc))))
        return result
    if not rows:
        result.rejects.append(Reject(0, "file has no rows"))
    for raw in rows:
        try:
            event = map_row(raw, agency, source_unit=source_unit, sha256=sha256)
        except RowError as exc:
            result.rejects.append(Reject(raw.row, scrub(str(exc))))
            continue
        problem = _unpublishable(event)
        if problem is not None:
            result.rejects.append(Reject(raw.row, problem))
            continue
        result.events.append((raw.row, event))
    return result


def _unpublishable(event: Event) -> str | None:
    """Why ``event`` could never be published (the producer would fail on it forever), or None."""
    try:
        size = len(default_serde().encode(event))
    except ContractError as exc:  # e.g. text that is no valid Unicode (a lone surrogate escape in JSON)
        return scrub(f"row cannot be encoded ({exc.message})")
    if size > MAX_EVENT_BYTES:
        return "row is too large: its event would be over 1 MB, more than Kafka takes"
    return None


def parse_file(path: Path, agency: str, *, source_unit: str) -> FileResult:
    """Read and map one dropped file. Raises ``FileNameError`` for a refused name, before reading."""
    validate_file_name(path.name)
    data = path.read_bytes()
    return parse_bytes(data, path.name, agency, source_unit=source_unit, sha256=hashlib.sha256(data).hexdigest())


def rejects_path(path: Path, out_dir: Path | None = None) -> Path:
    """Where the rejects of ``path`` go: ``<out_dir or path's folder>/<name>.rejects.csv``."""
    return (out_dir if out_dir is not None else path.parent) / f"{path.name}.rejects.csv"


def write_rejects_csv(path: Path, rejects: Iterable[Reject], *, out_dir: Path | None = None) -> Path:
    """Write ``<name>.rejects.csv`` (columns ``row,reason``) beside ``path`` (or in ``out_dir``).

    ``path`` is the dropped file. The file is written atomically (temporary file, then rename) and its
    path returned. Reasons are scrubbed again, so nothing that looks like a personnummer is written.
    """
    target = rejects_path(path, out_dir)
    fd, tmp = tempfile.mkstemp(prefix=".rejects-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row", "reason"])
            for reject in rejects:
                writer.writerow([reject.row, scrub(reject.reason)])
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
