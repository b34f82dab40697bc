"""``hub connector filedrop``: publish the rows of CSV/JSON files dropped into a folder.

The connector polls ``directory`` (no watcher library) for ``*.csv`` / ``*.json`` files, maps each with
:func:`connectors.filedrop.mapping.parse_bytes` (the content of :func:`~connectors.filedrop.mapping.parse_file`,
read once without following symlinks) and yields its events in row order. A file is moved to
``directory/done/`` once every one of its events is acknowledged by the broker, with
``<name>.rejects.csv`` beside it when rows were rejected. Refused names (``validate_file_name``: ``..``,
leading ``.``, control characters), symlinks and files over the size limit are moved to
``directory/rejected/`` with a ``.rejects.csv`` saying why; they are never read.

A file name may hold a personnummer (an export per person): names are shown redacted
(:func:`shown`) in log lines, in the checkpoint's ledger and so in the progress the CLI prints.

Whoever can write to the drop folder must not be able to make the connector write elsewhere: ``done/``
and ``rejected/`` must be real folders (a symlink or a file there stops the connector with
:class:`UnsafeFolderError` before anything is moved), files are moved into them through a descriptor
opened without following links, and a dropped entry is only read when it is a regular file (a FIFO put
there, even in place of a file already scanned, is refused instead of blocking the connector).

In continuous mode a file is only taken once its size and modification time are unchanged between two
polls (so a file still being copied is not read half-way); writers should still prefer to write under
another name and rename into the folder. ``once=True`` takes every file at once and returns.

The checkpoint holds a ledger keyed by the SHA-256 of a file's bytes::

    {"files": {"<sha256>": {"name": "x.csv", "next_row": 7, "done": false}}}

``next_row`` is set before each event is yielded (every row below it is covered by that event's
checkpoint), ``done`` together with the last event. A restart mid-file resumes at ``next_row``;
a file whose content is already ``done`` is moved to ``done/`` without producing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from connectors.base import Connector
from connectors.filedrop.formats import (
    AGENCIES as FILEDROP_AGENCIES,
)
from connectors.filedrop.formats import (
    MAX_FILE_BYTES,
    SUFFIXES,
    FileNameError,
    validate_file_name,
)
from connectors.filedrop.mapping import FileResult, Reject, parse_bytes, write_rejects_csv
from hub.contract.envelope import Event
from hub.identity import filedrop_principal, parse_unit
from hub.logsafety import redact
from hub.settings import HubSettings

log = logging.getLogger(__name__)

DONE = "done"
REJECTED = "rejected"


class UnsafeFolderError(RuntimeError):
    """``done/`` or ``rejected/`` of the drop folder is a symlink or not a folder: nothing is moved."""


def shown(name: str) -> str:
    """A file name as logs and the ledger show it: anything shaped like a personnummer redacted."""
    return redact(name)


def free_target(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<stem>.<k><suffix>`` for the first ``k`` not taken yet."""
    target = folder / name
    stem, dot, suffix = name.rpartition(".")
    k = 1
    while target.exists() or target.is_symlink():
        target = folder / (f"{stem}.{k}.{suffix}" if dot else f"{name}.{k}")
        k += 1
    return target


class FileDropConnector(Connector):
    """Publishes the rows of files dropped into ``directory`` for one source unit (``kriminalvarden``,
    ``kommun-1381``), as that unit's file-drop principal (``connector-filedrop-kommun-1381``), which may write
    the unit's own topic only. A row about another municipality than the unit's is rejected."""

    def __init__(self, settings: HubSettings, *, agency: str, directory: Path, poll_interval_s: float = 2.0,
                 once: bool = False, **kwargs: Any) -> None:  # fmt: skip
        unit = parse_unit(agency, settings.municipality_codes)
        if unit.agency not in FILEDROP_AGENCIES:
            raise ValueError(f"the file drop is for {', '.join(FILEDROP_AGENCIES)} units, not {agency}")
        kwargs.setdefault("principal", filedrop_principal(unit))
        super().__init__(settings, name=f"filedrop-{unit.name}", **kwargs)
        self.unit = unit
        self.agency = unit.agency
        self.directory = Path(directory)
        self.poll_interval_s = poll_interval_s
        self.once = once
        self.source_unit = f"filedrop {unit.name}"
        self._last_seen: dict[str, tuple[int, int]] = {}

    # -- the loop ----------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[Event]:
        if not self.directory.is_dir():
            raise FileNotFoundError(f"drop folder {self.directory} does not exist")
        for name in (DONE, REJECTED):
            self._subfolder(name, create=False)
        while not self.stopping:
            for path in self._scan():
                async for event in self._process(path):
                    yield event
                if self.stopping:
                    return
            if self.once or await self.wait_stopping(self.poll_interval_s):
                return

    async def _process(self, path: Path) -> AsyncIterator[Event]:
        ledger: dict[str, Any] = self.checkpoint.setdefault("files", {})
        result = self._read(path)
        if result is None:
            return
        entry = ledger.get(result.sha256)
        if entry is not None and entry.get("done"):
            log.info("filedrop %s: %s was already delivered; moved to %s/ unchanged", self.agency, shown(path.name),
                     DONE)  # fmt: skip
            self._move(path, DONE, [])
            return
        start = int(entry["next_row"]) if entry is not None else 0
        pending = [(row, event) for row, event in result.events if row >= start]
        for i, (row, event) in enumerate(pending):
            if self.stopping:
                return
            ledger[result.sha256] = {"name": shown(path.name), "next_row": row + 1, "done": i == len(pending) - 1}
            yield event
        if pending:
            await self._acknowledged()
            durable = self.durable_checkpoint.get("files", {}).get(result.sha256, {})
            if not durable.get("done"):  # pragma: no cover - only when acks were abandoned (stopping)
                return
        else:
            ledger[result.sha256] = {"name": shown(path.name), "next_row": start, "done": True}
        self._move(path, DONE, result.rejects)
        log.info("filedrop %s: %s: %d events, %d rejects", self.agency, shown(path.name), len(result.events),
                 len(result.rejects))  # fmt: skip

    async def _acknowledged(self) -> None:
        """Wait until every event produced so far has been acknowledged (or abandoned)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- the folder --------------------------------------------------------------------------------------

    def _scan(self) -> list[Path]:
        """Files ready to process, by name; refused names and symlinks are moved to ``rejected/``."""
        ready: list[str] = []
        seen: dict[str, tuple[int, int]] = {}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if not name.lower().endswith(SUFFIXES):
                    continue
                if entry.is_symlink():
                    self._move(self.directory / name, REJECTED, [Reject(0, "not a regular file (symlink)")])
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    validate_file_name(name)
                except FileNameError as exc:
                    self._move(self.directory / name, REJECTED, [Reject(0, str(exc))])
                    continue
                st = entry.stat(follow_symlinks=False)
                seen[name] = (st.st_size, st.st_mtime_ns)
                if self.once or self._last_seen.get(name) == seen[name]:
                    ready.append(name)
        self._last_seen = seen
        return [self.directory / name for name in sorted(ready)]

    def _read(self, path: Path) -> FileResult | None:
        """Read and map ``path`` (never through a symlink, only a regular file); None when it vanished, is
        too large or is no regular file (then it was moved to ``rejected/``)."""
        try:
            # Non-blocking: opening a FIFO put in place of the scanned file must not wait for a writer.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1) if stat.S_ISREG(os.fstat(f.fileno()).st_mode) else None
        except OSError as exc:
            log.warning("filedrop %s: cannot read %s (%s); trying again later", self.agency, shown(path.name),
                        type(exc).__name__)  # fmt: skip
            return None
        if data is None:
            self._move(path, REJECTED, [Reject(0, "not a regular file")])
            return None
        if len(data) > MAX_FILE_BYTES:
            self._move(path, REJECTED, [Reject(0, f"file is larger than {MAX_FILE_BYTES} bytes")])
            return None
        sha256 = hashlib.sha256(data).hexdigest()
        result = parse_bytes(data, path.name, self.agency, source_unit=self.source_unit, sha256=sha256)
        return self._own_municipality_only(result)

    def _own_municipality_only(self, result: FileResult) -> FileResult:
        """A municipality's drop may only hold events about that municipality: other rows are rejected."""
        own = self.unit.municipality
        if own is None:
            return result
        foreign = [(row, e) for row, e in result.events if e.envelope.municipality_code != own]
        if not foreign:
            return result
        rejects = [*result.rejects, *(Reject(row, f"municipality {e.envelope.municipality_code} is not "
                                                  f"{self.unit.name}'s own") for row, e in foreign)]
        kept = [(row, e) for row, e in result.events if e.envelope.municipality_code == own]
        return replace(result, events=kept, rejects=sorted(rejects, key=lambda r: r.row))

    def _subfolder(self, name: str, *, create: bool = True) -> Path:
        """``directory/<name>/``, created when missing (``create``); :class:`UnsafeFolderError` unless it is
        a real folder (not a symlink to one)."""
        folder = self.directory / name
        if create:
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            return folder
        if not stat.S_ISDIR(mode):
            raise UnsafeFolderError(f"{folder} is a symlink or not a folder; refusing to move dropped files into it")
        return folder

    def _move(self, path: Path, folder_name: str, rejects: list[Reject]) -> None:
        """Move ``path`` into ``directory/<folder_name>/`` (a free name), with its rejects if any."""
        folder = self._subfolder(folder_name)
        try:  # the folder as it is now, never through a link swapped in since the check
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise UnsafeFolderError(f"{folder} cannot be opened as a folder ({type(exc).__name__})") from None
        try:
            target = free_target(folder, path.name)
            os.replace(path, target.name, dst_dir_fd=dir_fd)
        except FileNotFoundError:
            return
        finally:
            os.close(dir_fd)
        if rejects:
            write_rejects_csv(target, rejects, out_dir=folder)
        if folder_name == REJECTED:
            log.warning("filedrop %s: refused %s: %s", self.agency, shown(repr(path.name)),
                        "; ".join(r.reason for r in rejects))  # fmt: skip
