"""The file drop against whoever can write into the drop folder: what the connector tests leave out.

Refused names (``..``, hidden, control characters) and symlinked files are proven in
tests/connectors/test_filedrop_*.py and at volume in tests/fuzz/test_fuzz_filedrop.py; here: symlinked
``done/``/``rejected/`` folders, FIFOs, personnummer in file names, and rows that no producer could send.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.filedrop.connector import FileDropConnector, UnsafeFolderError
from connectors.filedrop.mapping import parse_file
from hub.contract.envelope import Event
from tests.factories import make_pnr
from tests.hub.support import HubUnderTest

pytestmark = pytest.mark.kafka

PNR = make_pnr("20110305", "991")
LAHOLM = "kommun-1381"
"""The source unit whose drop folder it is (every row here is about 1381)."""


def row(**overrides: Any) -> dict[str, Any]:
    base = {"kind": "youth_activity", "municipality_code": "1381", "occurred_at": "2026-03-06T18:00:00+01:00",
            "activity_id": "FRI-1", "activity_kind": "open_youth_centre", "participants": 30,
            "participants_13_17": 20, "participants_18_24": 5}  # fmt: skip
    return {**base, **overrides}


def make_hub(bootstrap: str, tmp_path: Path, unique: Callable[[str], str]) -> HubUnderTest:
    hub = HubUnderTest(bootstrap, f"{unique('sfd')}.", tmp_path / "state")
    hub.create_topics()
    return hub


def run_once(hub: HubUnderTest, folder: Path, timeout_s: float = 120) -> dict[str, Any]:
    connector = FileDropConnector(hub.settings(), agency=LAHOLM, directory=folder, once=True)

    async def go() -> dict[str, Any]:
        return await asyncio.wait_for(connector.execute(handle_signals=False), timeout_s)

    return asyncio.run(go())


def published(hub: HubUnderTest, expect: int) -> list[Event]:
    topic = hub.topics.agency("kommun", "1381")
    got = hub.read([topic], until=lambda g: len(g[topic]) >= expect, quiet_s=2, timeout_s=60)[topic]
    return [e for e in got if isinstance(e, Event)]


@pytest.mark.parametrize("sub", ["done", "rejected"])
def test_a_symlinked_done_or_rejected_folder_stops_the_connector_before_anything_moves(
    kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str], sub: str
) -> None:
    """Regression: ``done/`` as a symlink made the connector move dropped files (and write rejects) wherever
    it pointed — anywhere the hub may write."""
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    folder, elsewhere = tmp_path / "drop", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / sub).symlink_to(elsewhere, target_is_directory=True)
    (folder / "good.json").write_text(json.dumps([row()]), encoding="utf-8")
    (folder / "..evil.csv").write_text("kind\n", encoding="utf-8")

    with pytest.raises(UnsafeFolderError, match=f"{sub} is a symlink or not a folder"):
        run_once(hub, folder)

    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in folder.iterdir()) == sorted(["..evil.csv", "good.json", sub])
    assert published(hub, 0) == []
    (folder / sub).unlink()  # a real folder again: the files go where they belong
    (folder / sub).write_text("not a folder", encoding="utf-8")
    with pytest.raises(UnsafeFolderError):
        run_once(hub, folder)
    assert list(elsewhere.iterdir()) == []


def test_the_cli_says_so_in_one_line_and_exits_2(kafka_bootstrap: str, tmp_path: Path,
                                                 unique: Callable[[str], str]) -> None:  # fmt: skip
    import subprocess
    import sys

    from tests.hub.support import REPO

    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "done").symlink_to(tmp_path, target_is_directory=True)
    done = subprocess.run([sys.executable, "-m", "hub.cli", "connector", "filedrop", "--agency", LAHOLM,
                           str(folder), "--once"], cwd=REPO, env=hub.env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in done.stderr


def test_a_fifo_is_never_opened_for_reading(kafka_bootstrap: str, tmp_path: Path,
                                            unique: Callable[[str], str]) -> None:  # fmt: skip
    """A FIFO named like an export is left alone by the scan; one swapped in for a scanned file is refused.

    Regression for the second: the connector opened it and blocked until someone wrote to it.
    """
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    folder = tmp_path / "drop"
    folder.mkdir()
    os.mkfifo(folder / "pipe.csv")
    (folder / "good.json").write_text(json.dumps([row()]), encoding="utf-8")
    assert run_once(hub, folder, timeout_s=60)["produced"] == 1
    assert sorted(p.name for p in folder.iterdir()) == ["done", "pipe.csv"]

    # The race: the scan saw a regular file, then a FIFO took its name before the read.
    connector = FileDropConnector(hub.settings(), agency=LAHOLM, directory=folder, once=True)
    swapped = folder / "swapped.csv"
    os.mkfifo(swapped)
    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(connector._read(swapped)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # blocked on the FIFO: release it, then fail
        with open(os.open(swapped, os.O_WRONLY | os.O_NONBLOCK), "wb"):
            pass
        reader.join(timeout=10)
        pytest.fail("reading a FIFO blocked the connector")
    assert outcome == [None]
    assert (folder / "rejected" / "swapped.csv.rejects.csv").read_text(encoding="utf-8").splitlines() == [
        "row,reason", "0,not a regular file"]  # fmt: skip


def test_a_personnummer_in_a_file_name_is_not_logged_checkpointed_or_printed(
    kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: the name of a per-person export went verbatim into the log, the checkpoint's ledger
    and the progress ``hub connector filedrop`` prints."""
    caplog.set_level(logging.DEBUG)
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    folder = tmp_path / "drop"
    folder.mkdir()
    dashed = f"{PNR[:8]}-{PNR[8:]}"
    names = [f"orosanmalan-{PNR}.json", f"samtycke_{dashed}.json", f"{PNR[2:]}.csv", f".{PNR}.csv"]
    (folder / names[0]).write_text(json.dumps([row(activity_id="A")]), encoding="utf-8")
    (folder / names[1]).write_text(json.dumps([row(activity_id="B"), {"kind": "nonsense"}]), encoding="utf-8")
    (folder / names[2]).write_text("kind\n", encoding="utf-8")  # no rows
    (folder / names[3]).write_text("kind\n", encoding="utf-8")  # a refused (hidden) name
    progress = run_once(hub, folder)

    assert progress["produced"] == 2
    assert sorted(p.name for p in (folder / "done").iterdir()) == sorted(
        [names[0], names[1], f"{names[1]}.rejects.csv", names[2], f"{names[2]}.rejects.csv"])  # fmt: skip
    text = json.dumps(progress) + (hub.state_dir / "connectors" / f"filedrop-{LAHOLM}.json").read_text() + caplog.text
    for form in (PNR, dashed, PNR[2:]):
        assert form not in text
    assert "<personnummer>" in text  # the files are still told apart by what is left of their names
    assert len(published(hub, 2)) == 2


def test_rows_no_producer_could_send_are_rejected_and_the_file_completes(
    kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    """Regression: a row over Kafka's message limit was re-sent forever (the file never finished and every
    file after it waited), and text with a lone surrogate escape crashed the connector."""
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    folder = tmp_path / "drop"
    folder.mkdir()
    rows = [row(activity_id="A"), row(activity_id="B", activity_kind="kvällsöppet " * 120_000),
            row(activity_id="C"), row(activity_id="D", activity_kind="x\ud800y"), row(activity_id="E")]  # fmt: skip
    (folder / "export.json").write_text(json.dumps(rows), encoding="utf-8")  # ensure_ascii: "\ud800" stays an escape
    (folder / "later.json").write_text(json.dumps([row(activity_id="F")]), encoding="utf-8")

    assert run_once(hub, folder, timeout_s=120)["produced"] == 4

    rejects = (folder / "done" / "export.json.rejects.csv").read_text(encoding="utf-8").splitlines()
    reasons = dict(line.split(",", 1) for line in rejects[1:])
    assert set(reasons) == {"2", "4"}
    assert "too large" in reasons["2"]
    assert "cannot be encoded" in reasons["4"]
    assert sorted(e.payload.activity_id for e in published(hub, 4)) == ["A", "C", "E", "F"]  # type: ignore[attr-defined]
    assert [r for r, _ in parse_file(folder / "done" / "export.json", "kommun", source_unit="x").events] == [1, 3, 5]
