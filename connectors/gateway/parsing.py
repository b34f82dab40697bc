"""Request bodies → numbered JSON documents, with limits on nesting depth and line count.

Every step costs time linear in the body, whatever it holds — no regular expression and no loop whose
cost grows faster than the body ever runs on request data:

- lines are split and decoded by ``bytes`` methods;
- the nesting depth and the number of arrays/objects (:func:`shape`) are measured on the raw bytes before
  parsing, by ``bytes`` methods only (escape removal, one split on ``"``, one ``translate``, then at most
  ``max_depth + 1`` passes that each remove every innermost ``[]`` pair), none of them backtracking;
- JSON is parsed by the standard library's C scanner, which reads each byte once and stops at the first
  error (an unterminated string is found at the end of the data, however many ``\\"`` it holds).

Error messages never contain input text: only what is wrong and where (line, column).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
"""Every byte but quotes and the four brackets (what ``translate`` deletes)."""
_ONE_BRACKET_KIND = bytes.maketrans(b"{}", b"[]")
"""Objects count like arrays: only the depth matters, the parser checks that the pairs match."""
MAX_CONTAINERS = 1000
"""Most arrays and objects one event may hold (an event has about five). Parsing a megabyte of ``[]`` would
otherwise take the parser a good fraction of a second, most of it allocating lists."""


class BodyError(Exception):
    """The whole body is unacceptable (``status`` 400 or 413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Line:
    """One event document of a body: ``data`` when it parsed, else ``status`` and ``error``."""

    number: int
    data: Any = None
    status: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Shape:
    """What :func:`shape` measured of a JSON text."""

    depth: int
    """How deep arrays/objects nest (a scalar document is 0, ``[]`` and ``{}`` are 1); at most ``limit + 1``;
    not measured (0) when there are more than :data:`MAX_CONTAINERS` containers."""
    containers: int
    """How many arrays and objects it opens, outside strings."""


def _brackets(raw: bytes) -> bytes:
    """The brackets of a JSON text outside its strings, objects written as arrays (``{"a": [1]}`` → ``[[]]``).

    Escapes are removed first (``\\\\``, then ``\\"``, left to right as JSON reads them), so every quote
    left opens or closes a string. Then everything but quotes and brackets is deleted; two adjacent quotes
    are dropped (that keeps whether each bracket is inside a string: the number of quotes before it stays
    even or odd), and the brackets between the remaining quotes, inside strings, with them.
    """
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(_ONE_BRACKET_KIND, _NOT_STRUCTURE)
    text = text.replace(b'""', b"")
    if b'"' in text:
        text = b"".join(text.split(b'"')[::2])
    return text


def shape(raw: bytes, limit: int) -> Shape:
    """The nesting depth (exact up to ``limit``, else ``limit + 1``) and container count of a JSON text.

    Linear in ``raw``, by ``bytes`` methods only: :func:`_brackets`, then each pass removes every innermost
    ``[]`` pair — a document of depth d is empty after d passes, and at most ``limit + 1`` passes run. A
    text that is not balanced JSON gets some shape here and is refused by the parser.
    """
    text = _brackets(raw)
    containers = text.count(b"[")
    depth = 0
    while text and depth <= limit and containers <= MAX_CONTAINERS:
        shorter = text.replace(b"[]", b"")
        if len(shorter) == len(text):  # brackets without a pair: not JSON, the parser says so
            break
        text = shorter
        depth += 1
    return Shape(depth, containers)


def nesting_depth(raw: bytes, limit: int) -> int:
    """How deep ``[``/``{`` nest outside strings in a JSON text; counts up to ``limit + 1`` (:func:`shape`)."""
    return shape(raw, limit).depth


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(number: int, max_depth: int) -> Line:
    return Line(number, status=400, error=f"JSON nested deeper than {max_depth} levels")


def parse_document(number: int, raw: bytes, max_depth: int) -> Line:
    """Parse one JSON document (one line of NDJSON or a whole JSON body): 400 when it is nested deeper than
    ``max_depth``, holds more than :data:`MAX_CONTAINERS` arrays and objects, is not UTF-8 or not JSON."""
    measured = shape(raw, max_depth)
    if measured.depth > max_depth:
        return _too_deep(number, max_depth)
    if measured.containers > MAX_CONTAINERS:
        return Line(number, status=400, error=f"more than {MAX_CONTAINERS} arrays and objects in one event")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Line(number, status=400, error=f"not UTF-8 (byte {exc.start})")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return Line(number, status=400, error=f"malformed JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:  # not reached: the depth was checked; kept so no input can raise out of here
        return _too_deep(number, max_depth)
    except ValueError:  # NaN/Infinity, or an integer longer than Python converts (sys.get_int_max_str_digits)
        return Line(number, status=400, error="malformed JSON")
    return Line(number, data=data)


def split_body(body: bytes, ndjson: bool, *, max_lines: int, max_depth: int) -> list[Line]:
    """The documents of a body: one for JSON, one per non-blank line for NDJSON (numbered from 1)."""
    if not ndjson:
        if not body.strip():
            raise BodyError(400, "empty body")
        return [parse_document(1, body, max_depth)]
    lines = [(i, raw.strip()) for i, raw in enumerate(body.split(b"\n"), start=1)]
    lines = [(i, raw) for i, raw in lines if raw]
    if not lines:
        raise BodyError(400, "empty body")
    if len(lines) > max_lines:
        raise BodyError(413, f"more than {max_lines} events in one batch")
    return [parse_document(i, raw, max_depth) for i, raw in lines]
