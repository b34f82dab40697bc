"""The file-drop connector against a real broker: publish, move, rejects, re-delivery, restart, names."""

from __future__ import annotations

import asyncio
import csv
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from connectors.filedrop.connector import FileDropConnector
from connectors.filedrop.mapping import parse_file
from hub.contract.base import ContractRecord
from hub.contract.envelope import Event
from tests.hub.support import REPO, HubUnderTest

EXAMPLES = REPO / "docs" / "examples" / "filedrop"
KOMMUN_CSV = EXAMPLES / "kommun-laholm-2026-03.csv"
KV_JSON = EXAMPLES / "kriminalvarden-2026-03.json"
LAHOLM = "kommun-1381"
"""The source unit whose drop folder the Laholm example comes from (every row is about 1381)."""


def make_hub(bootstrap: str, tmp_path: Path, unique: Callable[[str], str]) -> HubUnderTest:
    hub = HubUnderTest(bootstrap, f"{unique('fd')}.", tmp_path / "state")
    hub.create_topics()
    return hub


def drop_dir(tmp_path: Path, *files: Path, name: str = "drop") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def agency_of(unit: str) -> str:
    """``kommun-1381`` → ``kommun``; ``kriminalvarden`` → itself."""
    return unit.partition("-")[0]


def unit_topic(hub: HubUnderTest, unit: str) -> str:
    """The agency topic of a source unit: ``kommun-1381`` → ``agency.kommun.1381.events``."""
    agency, _, code = unit.partition("-")
    return hub.topics.agency(agency, code or None)


def run(hub: HubUnderTest, unit: str, folder: Path, cls: type[FileDropConnector] = FileDropConnector,
        **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    connector = cls(hub.settings(), agency=unit, directory=folder, once=True, **kwargs)
    return asyncio.run(connector.execute(handle_signals=False))


def read(hub: HubUnderTest, unit: str, expect: int, quiet_s: float = 2.0) -> list[Event]:
    topic = unit_topic(hub, unit)
    got = hub.read([topic], until=lambda g: len(g[topic]) >= expect, quiet_s=quiet_s, timeout_s=30)
    events: list[ContractRecord] = got[topic]
    assert all(isinstance(e, Event) for e in events)
    return [e for e in events if isinstance(e, Event)]


def ids(events: list[Event]) -> list[str]:
    return [str(e.envelope.event_id) for e in events]


def expected_ids(path: Path, agency: str) -> set[str]:
    return {str(e.envelope.event_id) for _, e in parse_file(path, agency, source_unit="x").events}


def test_examples_are_published_and_moved_to_done(kafka_bootstrap: str, tmp_path: Path,
                                                   unique: Callable[[str], str]) -> None:  # fmt: skip
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    for unit, example in ((LAHOLM, KOMMUN_CSV), ("kriminalvarden", KV_JSON)):
        folder = drop_dir(tmp_path, example, name=unit)
        want = expected_ids(example, agency_of(unit))
        assert want
        assert run(hub, unit, folder)["produced"] == len(want)
        events = read(hub, unit, len(want))
        assert len(events) == len(want)
        assert set(ids(events)) == want
        assert all(e.envelope.source_unit == f"filedrop {unit}" for e in events)
        assert sorted(p.name for p in folder.iterdir()) == ["done"]
        assert sorted(p.name for p in (folder / "done").iterdir()) == [example.name]  # no rejects file


def test_bad_row_goes_to_rejects_and_good_rows_are_published(kafka_bootstrap: str, tmp_path: Path,
                                                              unique: Callable[[str], str]) -> None:  # fmt: skip
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    lines = KOMMUN_CSV.read_text(encoding="utf-8").splitlines()
    bad = lines[2].replace("2026-03-07T19:30:00+01:00", "igår kväll")
    assert bad != lines[2]
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "mixed.csv").write_text("\n".join([lines[0], lines[1], bad, lines[3]]) + "\n", encoding="utf-8")

    assert run(hub, LAHOLM, folder)["produced"] == 2
    assert len(read(hub, LAHOLM, 2)) == 2
    done = folder / "done"
    assert (done / "mixed.csv").exists()
    assert not (folder / "mixed.csv").exists()
    with (done / "mixed.csv.rejects.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["row", "reason"]
    assert [r[0] for r in rows[1:]] == ["3"]
    assert "occurred_at" in rows[1][1]


def test_same_file_again_publishes_nothing(kafka_bootstrap: str, tmp_path: Path,
                                           unique: Callable[[str], str]) -> None:  # fmt: skip
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    folder = drop_dir(tmp_path, KOMMUN_CSV)
    n = len(expected_ids(KOMMUN_CSV, "kommun"))
    assert run(hub, LAHOLM, folder)["produced"] == n

    async def redeliver_while_polling() -> dict[str, Any]:
        connector = FileDropConnector(hub.settings(), agency=LAHOLM, directory=folder, poll_interval_s=0.05)
        task = asyncio.create_task(connector.execute(handle_signals=False))
        await asyncio.sleep(0.2)
        shutil.copy(KOMMUN_CSV, folder / KOMMUN_CSV.name)
        for _ in range(400):  # the polling connector moves it to done/ within a few polls
            if not (folder / KOMMUN_CSV.name).exists():
                break
            await asyncio.sleep(0.05)
        connector.request_stop()
        return await task

    assert asyncio.run(redeliver_while_polling())["produced"] == 0
    assert len(read(hub, LAHOLM, n)) == n
    done = sorted(p.name for p in (folder / "done").iterdir())
    assert done == sorted([KOMMUN_CSV.name, KOMMUN_CSV.name.replace(".csv", ".1.csv")])


class StopAfter(FileDropConnector):
    """Requests a stop after ``k`` events were handed to the producer (a crash-free mid-file restart)."""

    k = 3

    async def run(self) -> AsyncIterator[Event]:
        n = 0
        async for event in super().run():
            yield event
            n += 1
            if n >= self.k:
                self.request_stop()


def test_restart_mid_file_resumes_without_duplicates(kafka_bootstrap: str, tmp_path: Path,
                                                     unique: Callable[[str], str]) -> None:  # fmt: skip
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    folder = drop_dir(tmp_path, KOMMUN_CSV)
    want = expected_ids(KOMMUN_CSV, "kommun")
    assert len(want) > StopAfter.k

    first = run(hub, LAHOLM, folder, StopAfter)
    assert first["produced"] == StopAfter.k
    assert (folder / KOMMUN_CSV.name).exists(), "a half-published file must stay in the drop folder"
    (entry,) = first["checkpoint"]["files"].values()
    assert entry["done"] is False
    assert entry["name"] == KOMMUN_CSV.name

    second = run(hub, LAHOLM, folder)
    assert second["produced"] == len(want) - StopAfter.k
    events = read(hub, LAHOLM, len(want))
    assert len(events) == len(want)
    assert set(ids(events)) == want
    assert (folder / "done" / KOMMUN_CSV.name).exists()


def test_refused_names_and_symlinks_are_not_processed(kafka_bootstrap: str, tmp_path: Path,
                                                      unique: Callable[[str], str]) -> None:  # fmt: skip
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    folder = tmp_path / "drop"
    folder.mkdir()
    outside = tmp_path / "outside.csv"
    shutil.copy(KOMMUN_CSV, outside)
    for name in ("..evil.csv", ".hidden.csv"):
        shutil.copy(KOMMUN_CSV, folder / name)
    (folder / "link.csv").symlink_to(outside)
    (folder / "notes.txt").write_text("left alone", encoding="utf-8")

    assert run(hub, LAHOLM, folder)["produced"] == 0
    assert read(hub, LAHOLM, 0) == []
    rejected = folder / "rejected"
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "rejected"]
    assert sorted(p.name for p in rejected.iterdir()) == sorted(
        [*(f"{n}{s}" for n in ("..evil.csv", ".hidden.csv", "link.csv") for s in ("", ".rejects.csv"))]
    )
    assert "'..'" in (rejected / "..evil.csv.rejects.csv").read_text(encoding="utf-8")
    assert (rejected / "link.csv").is_symlink()
    assert outside.read_bytes() == KOMMUN_CSV.read_bytes()
