"""Fuzzing the file drop: a folder full of hostile files, one run of the real connector (``hub connector
filedrop --once``) on the real broker, then every file checked.

Every file must leave the folder — to ``done/`` (its good rows published, its bad rows in
``<name>.rejects.csv`` with a reason) or, for a refused name, to ``rejected/`` unread — except names that
are not ``.csv``/``.json``, which are left alone. Good rows become exactly the events they describe; nothing
else is published; no personnummer reaches a reason, the connector's log or its output. A folder belongs to one
source unit: the municipalities' files go to Laholm's (``kommun-1381``), whose rows about another
municipality are rejected, never published.
"""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from connectors.filedrop.mapping import FileResult, Reject, event_id_for, parse_bytes, scrub
from hub.contract.envelope import Event
from hub.contract.personnummer import contains_personnummer
from tests.fuzz.strategies import DROP_AGENCIES, DropFile, drop_files
from tests.fuzz.support import Figures, event_ids, generate, personnummer_lines, published_events
from tests.hub.support import REPO, HubUnderTest

# Sized by --full; a hang is caught sooner by the timeouts of the connector runs and the read.
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(3600)]

UNITS = {"kommun": "kommun-1381", "kriminalvarden": "kriminalvarden"}
"""The source unit whose drop folder gets each agency's files."""


def own_rows_only(unit: str, result: FileResult) -> FileResult:
    """What the connector of a municipality's unit makes of a mapped file: rows about another municipality
    are rejects (a unit publishes only about itself); other units' files are published as mapped."""
    _agency, _, own = unit.partition("-")
    if not own:
        return result
    foreign = [(row, e) for row, e in result.events if e.envelope.municipality_code != own]
    rejects = [*result.rejects, *(Reject(row, f"municipality {e.envelope.municipality_code} is not {unit}'s own")
                                  for row, e in foreign)]  # fmt: skip
    kept = [(row, e) for row, e in result.events if e.envelope.municipality_code == own]
    return replace(result, events=kept, rejects=sorted(rejects, key=lambda r: r.row))


def read_rejects(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["row", "reason"]
    return rows[1:]


def same_event(got: Event, want: Event) -> bool:
    a, b = got.envelope, want.envelope
    subject = (a.subject.personnummer if a.subject else None) == (b.subject.personnummer if b.subject else None)
    return subject and (a.event_type, a.municipality_code, a.area, a.occurred_at, a.recorded_at, a.data_class) == (
        b.event_type, b.municipality_code, b.area, b.occurred_at, b.recorded_at, b.data_class
    ) and got.payload.model_dump(mode="json") == want.payload.model_dump(mode="json")  # type: ignore[attr-defined]  # fmt: skip


def check_mapping(case: DropFile, result: FileResult) -> None:
    """What the labels of a file's rows demand of its mapping."""
    events = dict(result.events)
    rejected = {r.row: r.reason for r in result.rejects}
    for reason in rejected.values():
        assert reason.strip()
        assert not contains_personnummer(reason)
    if case.whole_file:
        assert not events, case.family
        assert list(rejected) == [0], (case.family, rejected)
        return
    for row in case.rows:
        if row.label == "good":
            assert row.row in events, (case.family, row.family, row.row, rejected.get(row.row))
            assert row.expected is not None
            assert same_event(events[row.row], row.expected), (case.family, row.row)
            assert events[row.row].envelope.event_id == event_id_for(result.sha256, row.row)
        elif row.label == "bad":
            assert row.row in rejected or 0 in rejected, (case.family, row.family, row.row)
        assert row.row in events or row.row in rejected or 0 in rejected, (case.family, row.row)


def test_every_dropped_file_is_published_rejected_or_refused_never_lost(
    kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str], fuzz_cases: int,
    figures: Callable[[str], Figures],
) -> None:  # fmt: skip
    fig = figures("file drop (hub connector filedrop)")
    hub = HubUnderTest(kafka_bootstrap, f"{unique('fzd')}.", tmp_path / "state")
    hub.create_topics()
    folders = {agency: tmp_path / f"drop-{agency}" for agency in DROP_AGENCIES}
    for folder in folders.values():
        folder.mkdir()
    dropped: list[DropFile] = []
    for case in generate(drop_files(), fuzz_cases):
        try:
            (folders[case.agency] / case.name).write_bytes(case.data)
        except OSError:  # a name this file system cannot hold (too long in bytes)
            fig.count("not creatable")
            continue
        dropped.append(case)
        fig.count("refused name" if case.name_refused else "ignored name" if case.ignored else case.family)

    for agency, folder in folders.items():
        with (tmp_path / f"filedrop-{agency}.out").open("wb") as out, \
                (tmp_path / f"filedrop-{agency}.log").open("wb") as err:  # fmt: skip
            done = subprocess.run([sys.executable, "-m", "hub.cli", "connector", "filedrop", "--agency", UNITS[agency],
                                   str(folder), "--once"], cwd=REPO, env=hub.env, stdout=out, stderr=err,
                                  timeout=600 + len(dropped), check=False)  # fmt: skip
        assert done.returncode == 0, (tmp_path / f"filedrop-{agency}.log").read_text(errors="replace")[-3000:]

    expected: Counter[tuple[str, str]] = Counter()
    seen: set[tuple[str, str]] = set()  # (agency, sha256) already delivered earlier in the run
    for case in sorted(dropped, key=lambda c: (c.agency, c.name)):  # the connector's order: by name
        folder = folders[case.agency]
        if case.ignored:
            assert (folder / case.name).exists(), "a file that is not .csv/.json was touched"
            continue
        assert not (folder / case.name).exists(), f"{case.family} was left in the drop folder"
        if case.name_refused:
            assert (folder / "rejected" / case.name).read_bytes() == case.data
            [[row, reason]] = read_rejects(folder / "rejected" / f"{case.name}.rejects.csv")
            assert row == "0"
            assert reason.strip()
            assert not (folder / "done" / case.name).exists()
            continue
        assert (folder / "done" / case.name).read_bytes() == case.data
        sha256 = hashlib.sha256(case.data).hexdigest()
        unit = UNITS[case.agency]
        result = parse_bytes(case.data, case.name, case.agency, source_unit=f"filedrop {unit}", sha256=sha256)
        check_mapping(case, result)
        result = own_rows_only(unit, result)
        rejects = folder / "done" / f"{case.name}.rejects.csv"
        if (case.agency, sha256) in seen:  # the same content again: already delivered, nothing more
            assert not rejects.exists()
            continue
        seen.add((case.agency, sha256))
        if result.rejects:
            assert read_rejects(rejects) == [[str(r.row), scrub(r.reason)] for r in result.rejects]
        else:
            assert not rejects.exists()
        expected.update((unit, str(event.envelope.event_id)) for _, event in result.events)

    published = published_events(hub, [UNITS[a] for a in DROP_AGENCIES], sum(expected.values()))
    assert all(event.envelope.source_unit == f"filedrop {unit}" for unit, event in published)
    assert event_ids(published) == expected, "published events differ from the good rows of the dropped files"
    fig.kinds["events published"] = len(published)

    for agency in DROP_AGENCIES:
        for name in (f"filedrop-{agency}.out", f"filedrop-{agency}.log"):
            text = (tmp_path / name).read_text(encoding="utf-8", errors="replace")
            assert personnummer_lines(text) == [], f"{name} holds a personnummer"
            assert "Traceback" not in text
