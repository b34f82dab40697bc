"""Request bodies → numbered JSON documents, with limits on nesting depth and line count.

Error messages never contain input text: only what is wrong and where (line, column).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


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


def nesting_depth(raw: bytes, limit: int) -> int:
    """Deepest ``[``/``{`` nesting outside strings; stops counting once above ``limit``."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_document(number: int, raw: bytes, max_depth: int) -> Line:
    """Parse one JSON document (one line of NDJSON or a whole JSON body)."""
    if nesting_depth(raw, max_depth) > max_depth:
        return Line(number, status=400, error=f"JSON nested deeper than {max_depth} levels")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Line(number, status=400, error=f"not UTF-8 (byte {exc.start})")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return Line(number, status=400, error=f"malformed JSON: {exc.msg} (column {exc.colno})")
    except (ValueError, RecursionError):
        return Line(number, status=400, error="malformed JSON")
    return Line(number, data=data)


def split_body(body: bytes, ndjson: bool, *, max_lines: int, max_depth: int) -> list[Line]:
    """The documents of a body: one for JSON, one per non-blank line for NDJSON (numbered from 1)."""
    if not ndjson:
        if not body.strip():
            raise BodyError(400, "empty body")
        return [parse_document(1, body, max_depth)]
    raw_lines = body.split(b"\n")
    lines = [(i, raw.strip()) for i, raw in enumerate(raw_lines, start=1) if raw.strip()]
    if not lines:
        raise BodyError(400, "empty body")
    if len(lines) > max_lines:
        raise BodyError(413, f"more than {max_lines} events in one batch")
    return [parse_document(i, raw, max_depth) for i, raw in lines]
