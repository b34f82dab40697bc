"""The log scanner ``scripts/scan_logs.py`` that ``scripts/test.sh`` runs over everything a test run wrote.

The planted files live in a temporary folder outside pytest's basetemp: the scan of the real run must
not find the numbers planted here.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.contract.personnummer import is_valid, luhn_ok
from tests.factories import make_pnr
from tests.hub.support import REPO

SCANNER = REPO / "scripts" / "scan_logs.py"
PNR = make_pnr("19850412", "123")  # 12 digits, valid check digit


@pytest.fixture
def outside() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="scan-logs-") as name:
        yield Path(name)


def scan(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCANNER), *map(str, paths)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def non_luhn(valid: str) -> str:
    """The same number with a wrong check digit."""
    wrong = f"{valid[:-1]}{(int(valid[-1]) + 1) % 10}"
    assert not luhn_ok(wrong[-10:])
    return wrong


def test_finds_a_planted_personnummer_in_every_form_and_prints_only_the_redacted_line(outside: Path) -> None:
    short = PNR[2:]
    forms = [PNR, f"{PNR[:8]}-{PNR[8:]}", short, f"{short[:6]}-{short[6:]}"]
    assert all(is_valid(x) for x in forms)
    (outside / "worker.log").write_text(
        "started\nall good\n" + "".join(f"subject {form} refused\n" for form in forms), encoding="utf-8"
    )
    (outside / "sub").mkdir()
    junit = "<testsuites>" + '<testcase name="t"/>' * 100 + f'<testcase name="test_x[{PNR}]"/></testsuites>\n'
    (outside / "sub" / "junit.xml").write_text(junit, encoding="utf-8")  # one long line
    (outside / "sub" / "stderr").write_text(f"noise\n{short}\n", encoding="utf-8")
    (outside / "server.log.2").write_text(f"[x] INFO {PNR}\n", encoding="utf-8")

    done = scan(outside)

    assert done.returncode == 1
    reported = [line.rsplit(": ", 1)[0] for line in done.stdout.splitlines()]
    assert reported == [
        f"{outside / 'server.log.2'}:1",
        f"{outside / 'sub' / 'junit.xml'}:1",
        f"{outside / 'sub' / 'stderr'}:2",
        *(f"{outside / 'worker.log'}:{n}" for n in (3, 4, 5, 6)),
    ]
    assert "subject <personnummer> refused" in done.stdout
    junit_line = next(line for line in done.stdout.splitlines() if "junit.xml:1: " in line)
    assert junit_line.split(": ", 1)[1].startswith("…")  # cut to the part around the finding
    assert junit_line.endswith('<testcase name="test_x[<personnummer>]"/></testsuites>')
    for form in forms:
        assert form not in done.stdout + done.stderr
    assert "FAILED: 7 line(s) with a personnummer in 4 log/output file(s)" in done.stderr


def test_ignores_digit_runs_that_are_not_personnummer(outside: Path) -> None:
    short = PNR[2:]
    lines = [
        non_luhn(PNR),  # the right shape, a wrong check digit
        non_luhn(PNR)[2:],
        "1755172800 1755172800123 offset 1234567890",  # epoch seconds and milliseconds, an offset
        "[2026-08-14 12:00:00,123] INFO segment 00000000000000001234",
        "event 7b0f7a64-3a55-4f1e-9f53-3f4f2a6f2b11 at 2026-08-14T12:00:00Z",
        f"x{PNR}1 and 1{PNR}",  # longer digit runs that merely contain one
        "19851332-1234",  # no such date
        f"event 7b0f7a64-3a55-4f1e-9f53-{short}a5 delivered",  # a UUID whose digits happen to pass the check
        f"sha256 {'ab' * 10}{PNR}{'cd' * 10} key {short}f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8",  # hashes, keys
    ]
    (outside / "hub.log").write_text("\n".join(lines) + "\n", encoding="utf-8")

    done = scan(outside)

    assert done.returncode == 0, done.stdout
    assert done.stdout == ""
    assert "ok: 0 line(s) with a personnummer in 1 log/output file(s)" in done.stderr


def test_data_files_kafka_segments_and_rocksdb_write_ahead_logs_are_not_logs(outside: Path) -> None:
    data = outside / "kafka" / "data" / "agency.kommun.events-0"
    data.mkdir(parents=True)
    (data / "00000000000000000000.log").write_text(f"avro ... {PNR} ...\n", encoding="utf-8")
    # Regression: a clean-clone run failed the scan on a dedup store's RocksDB WAL, binary bytes around a
    # UUID key whose digits passed the check; the store's own text log (LOG) is not a *.log file either.
    store = outside / "worker" / "worker-b" / "dedup" / "3"
    store.mkdir(parents=True)
    (store / "000004.log").write_bytes(b"\x01\x9a\x00k2d" + PNR[2:].encode() + b"-4e7d\xff\x00")
    (store / "CURRENT").write_text("MANIFEST-000005\n", encoding="utf-8")
    (outside / "drop.csv").write_text(f"kind,personnummer\nconsent_given,{PNR}\n", encoding="utf-8")
    (outside / "drop.json").write_text(f'[{{"personnummer": "{PNR}"}}]\n', encoding="utf-8")
    (outside / "drop.csv.rejects.csv").write_text("row,reason\n", encoding="utf-8")
    (outside / "server.log").write_text("clean\n", encoding="utf-8")

    done = scan(outside, outside / "absent")

    assert done.returncode == 0, done.stdout
    assert "absent does not exist; skipped" in done.stderr
    assert "ok: 0 line(s) with a personnummer in 1 log/output file(s)" in done.stderr


def test_the_local_broker_keeps_its_controller_event_ids_out_of_its_log() -> None:
    """Regression: a clean-clone CI run failed the scan on the broker's own log, where the controller's
    periodic performance line named an event by an internal id that happened to pass the personnummer
    check. The local broker's log configuration silences that logger below WARN."""
    config = (REPO / "hub" / "kafka" / "log4j2.properties").read_text(encoding="utf-8")
    settings = dict(line.split(" = ", 1) for line in config.splitlines() if " = " in line and not line.startswith("#"))
    name_keys = [k for k, v in settings.items() if v == "org.apache.kafka.controller.EventPerformanceMonitor"]
    assert len(name_keys) == 1
    assert settings[name_keys[0].removesuffix(".name") + ".level"] == "WARN"
