#!/usr/bin/env python3
"""Scan what a test run wrote for personnummer: every log file and captured output, which must hold none.

Usage::

    scan_logs.py PATH [PATH ...]

Each PATH is a file or a folder (searched recursively; a missing PATH is noted and skipped). Scanned are
files that are logs or captured output: ``*.log`` (and rotated ``*.log.N``), ``*.out``, ``*.err``,
``*.stdout``, ``*.stderr``, files named ``stdout``/``stderr``, and JUnit reports (``junit.xml``,
``*.junit.xml``). Not scanned: the tests' own input and output data (CSV/JSON drops, rejects files),
Kafka's partition segments (``00000000000000000000.log``) and RocksDB's write-ahead logs in the worker's
state folder (``000004.log``): they hold events and state records, binary and by design full of ids and
keys — data named ``.log``, not logs. Both are recognised by their numbered names (six digits or more).

A finding is a valid personnummer in one of its accepted forms: what
:func:`hub.contract.personnummer.contains_personnummer` finds (10 or 12 digits with an optional ``-``
or ``+``, a real date and a valid Luhn check digit), so timestamps, offsets and other digit runs are not
reported. Digits inside a UUID or a long hexadecimal string (a hash, a pseudonym) are not looked at:
about one random UUID in twenty thousand has ten digits in a row that pass the check by chance, and such
ids are logged by the thousand. Each finding is printed as ``file:line: <the line>`` with every
personnummer-shaped number in it replaced by :func:`hub.logsafety.redact` — the report never repeats it.

Exit status: 0 when nothing was found, 1 when anything was, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from hub.contract.personnummer import contains_personnummer
from hub.logsafety import redact

LOG_SUFFIXES = (".log", ".out", ".err", ".stdout", ".stderr")
CAPTURE_NAMES = frozenset({"stdout", "stderr", "junit.xml"})
_ROTATED = re.compile(r"\.log\.\d+$")
_NUMBERED_DATA = re.compile(r"^\d{6,}\.log$")  # Kafka segments (20 digits), RocksDB WALs (6+)
_UUID = re.compile(r"(?i)(?<![0-9a-z])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-z])")
_HEX = re.compile(r"(?i)(?<![0-9a-z])(?=[0-9]*[a-f])[0-9a-f]{32,}(?![0-9a-z])")
SNIPPET_CHARS = 200


def is_scanned(path: Path) -> bool:
    """True for a file that is a log or captured output (see the module docstring)."""
    name = path.name.lower()
    if _NUMBERED_DATA.match(name):
        return False
    return (
        name.endswith(LOG_SUFFIXES)
        or bool(_ROTATED.search(name))
        or name in CAPTURE_NAMES
        or name.endswith(".junit.xml")
    )


def files_to_scan(roots: Iterable[Path]) -> Iterator[Path]:
    """Every scanned file below ``roots`` (files given directly are taken as they are), in name order."""
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink() and is_scanned(p))


def holds_personnummer(line: str) -> bool:
    """True when ``line`` holds a valid personnummer outside UUIDs and long hexadecimal strings."""
    return contains_personnummer(_HEX.sub("<hex>", _UUID.sub("<uuid>", line)))


def findings(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, redacted line)`` for every line of ``path`` that holds a personnummer."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if holds_personnummer(line):
                snippet = _around_first(redact(line.strip()))
                if contains_personnummer(snippet):  # cannot happen: both use one pattern; never print one
                    snippet = "<line withheld>"
                yield number, snippet


def _around_first(redacted: str) -> str:
    """At most SNIPPET_CHARS of a long line, around its first redacted number (a JUnit report is one line)."""
    if len(redacted) <= SNIPPET_CHARS:
        return redacted
    start = max(0, redacted.find("<personnummer>") - SNIPPET_CHARS // 2)
    end = start + SNIPPET_CHARS
    return ("…" if start else "") + redacted[start:end] + ("…" if end < len(redacted) else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a file or a folder to scan")
    args = parser.parse_args(argv)
    for root in args.paths:
        if not root.exists():
            print(f"scan_logs: {root} does not exist; skipped", file=sys.stderr)
    scanned = found = 0
    for path in files_to_scan(args.paths):
        scanned += 1
        for number, snippet in findings(path):
            found += 1
            print(f"{path}:{number}: {snippet}")
    verdict = "FAILED" if found else "ok"
    print(f"scan_logs: {verdict}: {found} line(s) with a personnummer in {scanned} log/output file(s)",
          file=sys.stderr)  # fmt: skip
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
