"""File-drop mapping: examples, rejects with clear reasons and no personnummer, names, deterministic ids."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from connectors.filedrop.formats import KINDS, FileNameError, columns_markdown, validate_file_name
from connectors.filedrop.mapping import (
    FILEDROP_NAMESPACE,
    Reject,
    event_id_for,
    file_sha256,
    parse_file,
    rejects_path,
    scrub,
    write_rejects_csv,
)
from hub.contract import personnummer as pnr
from hub.contract.registry import SchemaRegistry
from hub.contract.serde import Serde

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples" / "filedrop"
KOMMUN_CSV = EXAMPLES / "kommun-laholm-2026-03.csv"
KV_JSON = EXAMPLES / "kriminalvarden-2026-03.json"
DOCS = REPO / "docs" / "filedrop.md"

PNR = "200904129814"  # a test-series number (serial 981)
PNR_DASH = "20090412-9814"
DIGITS = re.compile(r"\d{6,}")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_text(rows: list[dict[str, str]]) -> str:
    header: list[str] = []
    for r in rows:
        header += [k for k in r if k not in header]
    lines = [",".join(header)]
    for r in rows:
        lines.append(",".join(r.get(h, "") for h in header))
    return "\n".join(lines) + "\n"


def assert_no_pnr(texts: list[str]) -> None:
    for text in texts:
        assert not pnr.contains_personnummer(text), text
        assert "9814" not in text, text
        assert not DIGITS.search(text), text


def sig_row(**overrides: str) -> dict[str, str]:
    row = {
        "kind": "sig_referral",
        "municipality_code": "1381",
        "occurred_at": "2026-03-11T09:00:00+01:00",
        "personnummer": PNR_DASH,
        "case_id": "SIG-1",
        "referred_by": "polisen",
        "reason": "Upprepad brottslighet",
    }
    row.update(overrides)
    return row


# -- examples -------------------------------------------------------------------------------------------


def test_examples_parse_without_rejects() -> None:
    kommun = parse_file(KOMMUN_CSV, "kommun", source_unit="socialtjänsten Laholm")
    assert kommun.rejects == []
    assert {e.EVENT_TYPE for _, e in kommun.events} == {f"kommun.{k}" for k in KINDS if KINDS[k].agency == "kommun"}
    assert [row for row, _ in kommun.events] == list(range(2, 2 + len(kommun.events)))
    kv = parse_file(KV_JSON, "kriminalvarden", source_unit="Kriminalvården Halland")
    assert kv.rejects == []
    assert {e.EVENT_TYPE for _, e in kv.events} == {
        "kriminalvarden.release_scheduled",
        "kriminalvarden.probation_started",
        "kriminalvarden.probation_ended",
    }
    serde = Serde()
    for _, event in kommun.events + kv.events:
        assert serde.decode(serde.encode(event)) == event
        assert event.envelope.source_unit in {"socialtjänsten Laholm", "Kriminalvården Halland"}
    release = kv.events[0][1]
    assert release.payload.needs == ["housing", "employment"]  # type: ignore[attr-defined]
    assert release.envelope.subject is not None
    assert release.envelope.subject.personnummer == "199802149873"


def test_schema_versions_are_the_latest() -> None:
    registry = SchemaRegistry()
    kommun = parse_file(KOMMUN_CSV, "kommun", source_unit="x")
    for _, event in kommun.events:
        latest = registry.latest(type(event).SCHEMA_NAME)
        assert latest is not None
        assert event.envelope.schema_version == latest.version


def test_docs_have_every_kind_table() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for kind in KINDS:
        assert f"`{kind}`" in docs
        assert columns_markdown(kind) in docs, kind


# -- deterministic ids ----------------------------------------------------------------------------------


def test_ids_are_deterministic_per_file_content_and_row(tmp_path: Path) -> None:
    a = parse_file(KOMMUN_CSV, "kommun", source_unit="x")
    copy = tmp_path / "redelivered.csv"
    shutil.copyfile(KOMMUN_CSV, copy)
    b = parse_file(copy, "kommun", source_unit="x")
    ids_a = [e.envelope.event_id for _, e in a.events]
    assert ids_a == [e.envelope.event_id for _, e in b.events]
    assert len(set(ids_a)) == len(ids_a)
    sha = file_sha256(KOMMUN_CSV)
    assert a.sha256 == sha
    assert ids_a[0] == event_id_for(sha, 2)
    assert ids_a[0].version == 5
    assert FILEDROP_NAMESPACE.version == 5 or FILEDROP_NAMESPACE.int != 0
    changed = tmp_path / "changed.csv"
    changed.write_bytes(KOMMUN_CSV.read_bytes() + b"\n")
    c = parse_file(changed, "kommun", source_unit="x")
    assert [e.envelope.event_id for _, e in c.events] != ids_a


# -- rejects --------------------------------------------------------------------------------------------


def test_bad_rows_are_rejected_with_row_numbers_and_reasons(tmp_path: Path) -> None:
    rows = [
        sig_row(),  # row 2: fine
        sig_row(occurred_at="2026-13-45T09:00:00+01:00"),  # 3: bad timestamp
        sig_row(personnummer="20090412-9815"),  # 4: bad check digit
        sig_row(kind="sig_referal"),  # 5: unknown kind
        sig_row(case_id=""),  # 6: required empty
        {
            "kind": "consent_given",
            "municipality_code": "1381",
            "occurred_at": "2026-03-10T13:00:00+01:00",
            "personnummer": PNR,
            "consent_id": "S-1",
            "scope": "sig",
            "signed_by": "individual",
            "guardian_consent": "nej",
            "valid_from": "10/03/2026",
        },  # 7: bad date
        sig_row(municipality_code="1480"),  # 8: not served
        sig_row(kind="release_scheduled"),  # 9: other agency's kind
    ]
    result = parse_file(write(tmp_path, "drop.csv", csv_text(rows)), "kommun", source_unit="x")
    assert [row for row, _ in result.events] == [2]
    by_row = {r.row: r.reason for r in result.rejects}
    assert sorted(by_row) == [3, 4, 5, 6, 7, 8, 9]
    assert "occurred_at" in by_row[3]
    assert "timestamp" in by_row[3]
    assert "personnummer" in by_row[4]
    assert "check digit" in by_row[4]
    assert by_row[5] == "unknown kind 'sig_referal'"
    assert by_row[6] == "column case_id is empty (required for kind sig_referral)"
    assert "valid_from" in by_row[7]
    assert "YYYY-MM-DD" in by_row[7]
    assert "municipality_code" in by_row[8]
    assert by_row[9] == "kind release_scheduled is not sent by agency kommun"
    assert_no_pnr([r.reason for r in result.rejects])


def test_missing_column(tmp_path: Path) -> None:
    row = sig_row()
    del row["referred_by"]
    result = parse_file(write(tmp_path, "drop.csv", csv_text([row])), "kommun", source_unit="x")
    assert result.rejects == [Reject(2, "missing column referred_by (required for kind sig_referral)")]


def test_rejects_never_contain_the_personnummer(tmp_path: Path) -> None:
    """Personnummer put in every wrong place: kind, column names, other columns, bad forms."""
    rows: list[dict[str, Any]] = [
        {"kind": PNR, "municipality_code": "1381"},
        {"kind": PNR_DASH},
        sig_row(occurred_at=PNR),
        sig_row(municipality_code=PNR),
        sig_row(case_id=""),
        {**sig_row(), PNR: "x"},
        {**sig_row(), "note": PNR},
        {
            "kind": "youth_activity",
            "municipality_code": "1381",
            "occurred_at": "2026-03-06T18:00:00+01:00",
            "personnummer": PNR,
            "activity_id": "A",
            "activity_kind": "k",
            "participants": PNR,
            "participants_13_17": "1",
            "participants_18_24": "1",
        },
        sig_row(personnummer="20090412-981"),
        sig_row(personnummer="2009041298140"),
        sig_row(personnummer=PNR[:-1] + "5"),
        sig_row(personnummer="090412-9814", recorded_at=PNR),
    ]
    path = write(tmp_path, "pnr.json", json.dumps(rows))
    result = parse_file(path, "kommun", source_unit="x")
    assert len(result.rejects) == len(rows), result.rejects
    reasons = [r.reason for r in result.rejects]
    assert_no_pnr(reasons)
    out = write_rejects_csv(path, result.rejects)
    assert out == tmp_path / "pnr.json.rejects.csv"
    text = out.read_text(encoding="utf-8")
    assert_no_pnr([text])
    with out.open(newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["row", "reason"]
    assert [int(r[0]) for r in table[1:]] == list(range(1, len(rows) + 1))


def test_under_18_consent_needs_guardian(tmp_path: Path) -> None:
    row = {
        "kind": "consent_given",
        "municipality_code": "1381",
        "occurred_at": "2026-03-10T13:00:00+01:00",
        "personnummer": PNR,
        "consent_id": "S-1",
        "scope": "sig",
        "signed_by": "individual",
        "guardian_consent": "false",
        "valid_from": "2026-03-10",
    }
    result = parse_file(write(tmp_path, "c.csv", csv_text([row])), "kommun", source_unit="x")
    assert len(result.rejects) == 1
    assert "guardian_consent must be true" in result.rejects[0].reason
    assert_no_pnr([result.rejects[0].reason])


def test_subject_rules(tmp_path: Path) -> None:
    no_pnr = sig_row()
    del no_pnr["personnummer"]
    youth = {
        "kind": "youth_activity",
        "municipality_code": "1381",
        "occurred_at": "2026-03-06T18:00:00",
        "personnummer": PNR,
        "activity_id": "A",
        "activity_kind": "k",
        "participants": "3",
        "participants_13_17": "1",
        "participants_18_24": "1",
    }
    result = parse_file(write(tmp_path, "s.csv", csv_text([no_pnr, youth])), "kommun", source_unit="x")
    reasons = {r.row: r.reason for r in result.rejects}
    assert reasons[2] == "column personnummer is empty (required for kind sig_referral)"
    assert "personnummer must be empty" in reasons[3]


def test_semicolon_csv_bom_and_naive_local_time(tmp_path: Path) -> None:
    text = (
        "\ufeffkind;municipality_code;occurred_at;activity_id;activity_kind;participants;"
        "participants_13_17;participants_18_24;leader_hours\n"
        "youth_activity;1315;2026-07-01T18:00;A-1;field_work;10;8;2;3,5\n"
    )
    result = parse_file(write(tmp_path, "semi.csv", text), "kommun", source_unit="fritid Hylte")
    assert result.rejects == []
    event = result.events[0][1]
    assert event.envelope.occurred_at.hour == 16  # 18:00 CEST
    assert event.payload.leader_hours == 3.5  # type: ignore[attr-defined]


def test_file_level_problems_are_row_zero(tmp_path: Path) -> None:
    bad_json = parse_file(write(tmp_path, "bad.json", "{not json"), "kriminalvarden", source_unit="x")
    assert bad_json.events == []
    assert bad_json.rejects == [Reject(0, "file is not valid JSON")]
    no_kind = parse_file(write(tmp_path, "nokind.csv", "a,b\n1,2\n"), "kommun", source_unit="x")
    assert no_kind.rejects == [Reject(0, "file has no 'kind' column")]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("kind\nvåld\n".encode("latin-1"))
    assert parse_file(latin, "kommun", source_unit="x").rejects == [Reject(0, "file is not UTF-8")]
    not_obj = parse_file(write(tmp_path, "arr.json", "[1]"), "kommun", source_unit="x")
    assert not_obj.rejects == [Reject(1, "row is empty or not an object")]
    with pytest.raises(ValueError, match="agency must be one of"):
        parse_file(KOMMUN_CSV, "polisen", source_unit="x")


# -- file names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x.csv",
        "..csv",
        "a..b.csv",
        "sub/x.csv",
        "sub\\x.csv",
        "x\x00.csv",
        ".hidden.csv",
        "x.txt",
        "x.csv.exe",
        "x.CSV\n",
        ".csv",
        "x" * 300 + ".csv",
    ],
)
def test_refused_names(name: str) -> None:
    with pytest.raises(FileNameError):
        validate_file_name(name)


def test_accepted_names_and_parse_file_refuses_before_reading(tmp_path: Path) -> None:
    for name in ("kommun-2026-03.csv", "KV_export.JSON", "x.json"):
        assert validate_file_name(name) == name
    hidden = write(tmp_path, ".sneaky.csv", "kind\n")
    with pytest.raises(FileNameError):
        parse_file(hidden, "kommun", source_unit="x")


def test_rejects_path_and_scrub(tmp_path: Path) -> None:
    assert rejects_path(tmp_path / "a.csv") == tmp_path / "a.csv.rejects.csv"
    assert rejects_path(tmp_path / "a.csv", tmp_path / "out") == tmp_path / "out" / "a.csv.rejects.csv"
    assert scrub(f"x {PNR_DASH} y {PNR} z 1381") == "x [number] y [number] z 1381"
    out = write_rejects_csv(tmp_path / "a.csv", [Reject(3, f"leak {PNR}")])
    assert PNR not in out.read_text(encoding="utf-8")
