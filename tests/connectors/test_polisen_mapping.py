"""Mapping of the police's open events feed, checked against the 300 real events in shared/data.

Expectations are derived here independently of the implementation: municipality from ``name`` /
``location.name`` and the CSV read with :mod:`csv`, categories from a hand-written table (burglary-family
events labelled one by one after reading their summaries), times from a regex on ``name``.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.polisen_feed.categories import (
    CATEGORIES,
    TYPE_CATEGORIES,
    category_table_markdown,
    classify,
    mentions_dwelling,
    replace_table_block,
)
from connectors.polisen_feed.mapping import (
    FeedParseError,
    OutsideRegionError,
    load_municipalities,
    parse_event,
    parse_published,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
EVENTS_JSON = DATA / "polisen-events-sample.json"
TYPES_CSV = DATA / "polisen-event-types.csv"
KOMMUNER_CSV = DATA / "halland-kommuner.csv"
DOC = REPO / "docs" / "polisen-feed.md"

# Hand-written expectation for every type present in the sample (burglary family: see BURGLARY_LABELS).
EXPECTED_CATEGORY = {
    "Misshandel": "assault",
    "Stöld": "theft",
    "Rattfylleri": "traffic",
    "Bedrägeri": "fraud",
    "Rån": "robbery",
    "Mord/dråp, försök": "assault",
    "Trafikolycka": "traffic",
    "Skadegörelse": "vandalism",
    "Olaga hot": "threat_harassment",
    "Våld/hot mot tjänsteman": "assault",
    "Sammanfattning natt": "summary",
    "Övrigt": "other",
    "Sammanfattning kväll och natt": "summary",
    "Brand": "fire",
    "Farligt föremål, misstänkt": "shooting_explosion",
    "Trafikbrott": "traffic",
    "Trafikolycka, personskada": "traffic",
    "Stöld, försök": "theft",
    "Mord/dråp": "assault",
    "Knivlagen": "weapons",
    "Olovlig körning": "traffic",
    "Försvunnen person": "missing_person",
    "Åldringsbrott": "fraud",
    "Misshandel, grov": "assault",
    "Vapenlagen": "weapons",
    "Motorfordon, stöld": "theft",
    "Trafikolycka, singel": "traffic",
    "Ofredande/förargelse": "threat_harassment",
    "Rån, försök": "robbery",
    "Explosion": "shooting_explosion",
    "Trafikolycka, smitning från": "traffic",
    "Fylleri/LOB": "public_order",
    "Rån väpnat": "robbery",
    "Uppdatering": "other",
    "Anträffad död": "other",
    "Vållande till kroppsskada": "other",
    "Arbetsplatsolycka": "other",
    "Smällar": "public_order",
    "Ordningslagen": "public_order",
    "Mordbrand": "fire",
    "Räddningsinsats": "other",
    "Djur": "other",
    "Bråk": "public_order",
    "Olaga intrång": "threat_harassment",
    "Häleri": "theft",
    "Rån övrigt": "robbery",
    "Sabotage mot blåljusverksamhet": "public_order",
    "Miljöbrott": "other",
}
BURGLARY_FAMILY = {"Inbrott", "Inbrott, försök", "Stöld/inbrott", "Larm Inbrott"}
R, OB, T = "residential_burglary", "other_burglary", "theft"
# Labelled by reading each summary (id: category).
BURGLARY_LABELS = {
    645652: R,  # villa i Åsa
    640252: OB,  # inbrott i parkerad lastbil
    630217: R,  # inbrott i hennes bostad
    627668: OB,  # inbrottsförsök, no object given
    624470: R,  # inbrott i hennes hus
    624217: R,  # inbrott i bostad
    623511: R,  # bostadsinbrott
    617649: OB,  # inbrott i vindsförråd
    600192: R,  # sommarbostad (holiday homes count as dwellings)
    600053: R,  # inbrott in i en bostad
    599653: R,  # lägenhetshus
    599269: R,  # bostadshus
    598790: OB,  # husbilar (motorhomes are not dwellings)
    598071: T,  # stöld ur en lastbil, no break-in
    596701: R,  # bostaden står öppen
    596241: R,  # inbrott i bostaden
    596200: OB,  # pågående inbrott, no object given
    595617: R,  # bostadsinbrott
    594630: T,  # stöld från ett förråd, no break-in
    587491: R,  # family comes home (hem) to a burglary
    574796: OB,  # vårdcentral
    572513: T,  # stöld av grävmaskinstillbehör
    560271: R,  # inbrott i bostad
    558947: R,  # brutit sig in i huset
    557735: R,  # lägenhetsinnehavare, bostaden
    555750: OB,  # kommunens lokaler
    534884: R,  # villa
    530202: OB,  # pågående inbrott, no object given
    530135: OB,  # haft inbrott, no object given
    518628: R,  # Villainbrott
}
MONTHS = [
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
]


def _require_data() -> None:
    if not DATA.is_dir():
        pytest.skip(f"shared data folder not found at {DATA} (needs the `shared` folder next to the repo)")


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    _require_data()
    data: list[dict[str, Any]] = json.loads(EVENTS_JSON.read_text(encoding="utf-8"))
    assert len(data) == 300
    return data


@pytest.fixture(scope="module")
def kommuner() -> dict[str, str]:
    _require_data()
    with KOMMUNER_CSV.open(encoding="utf-8", newline="") as fh:
        return {row["municipality_name"]: row["municipality_code"] for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def municipalities() -> dict[str, str]:
    _require_data()
    return load_municipalities(KOMMUNER_CSV)


def _expected_municipality(event: dict[str, Any], kommuner: dict[str, str]) -> tuple[str, bool]:
    """(expected code, expected county_level) from name/location alone."""
    police_type = event["type"].strip()
    if police_type.startswith("Sammanfattning") or police_type == "Övrigt":
        return "13", True
    location = event["location"]["name"]
    last = event["name"].split(",")[-1].strip()
    if location in kommuner:
        return kommuner[location], False
    if location == "Hallands län" and last in kommuner:
        return kommuner[last], False
    return "13", True


def test_load_municipalities(kommuner: dict[str, str], municipalities: dict[str, str]) -> None:
    assert municipalities == kommuner
    assert municipalities["Halmstad"] == "1380"
    assert len(municipalities) == 6


def test_every_event_municipality_and_county_level(
    events: list[dict[str, Any]], kommuner: dict[str, str], municipalities: dict[str, str]
) -> None:
    codes: Counter[str] = Counter()
    for event in events:
        notice = parse_event(event, municipalities=municipalities)
        code, county_level = _expected_municipality(event, kommuner)
        assert (notice.municipality_code, notice.county_level) == (code, county_level), event["id"]
        expected_name = "Hallands län" if county_level else {v: k for k, v in kommuner.items()}[code]
        assert notice.municipality_name == expected_name, event["id"]
        codes[code] += 1
    # Both location forms are present in the sample: county-only since 2026, municipality before.
    assert codes["13"] > 0
    assert (
        sum(
            1
            for e in events
            if e["location"]["name"] == "Hallands län"
            and not e["type"].startswith(("Sammanfattning", "Övrigt"))
            and e["name"].split(",")[-1].strip() in kommuner
        )
        > 0
    )
    assert sum(codes.values()) == 300


def test_every_event_category(events: list[dict[str, Any]], municipalities: dict[str, str]) -> None:
    labelled = 0
    for event in events:
        notice = parse_event(event, municipalities=municipalities)
        assert notice.known_type, event["type"]
        if event["type"] in BURGLARY_FAMILY:
            assert notice.category == BURGLARY_LABELS[event["id"]], (event["id"], event["summary"])
            labelled += 1
        else:
            assert notice.category == EXPECTED_CATEGORY[event["type"]], (event["id"], event["type"])
    assert labelled == len(BURGLARY_LABELS)


def test_every_event_times(events: list[dict[str, Any]], municipalities: dict[str, str]) -> None:
    name_time = re.compile(r"^(\d{1,2}) ([a-zåäö]+) (\d{2})[.:](\d{2}),")
    for event in events:
        notice = parse_event(event, municipalities=municipalities)
        m = name_time.match(event["name"])
        assert m is not None, event["name"]
        day, month, hour, minute = int(m[1]), MONTHS.index(m[2]) + 1, int(m[3]), int(m[4])
        occurred = notice.occurred_at
        assert occurred.tzinfo is not None
        assert occurred.utcoffset() is not None
        assert notice.occurred_at_from_name
        assert (occurred.day, occurred.month, occurred.hour, occurred.minute) == (day, month, hour, minute)
        assert abs(occurred - notice.published_at) < timedelta(days=3), event["id"]
        # Published time: compare with the raw string split by hand.
        date_part, time_part, offset = event["datetime"].split(" ")
        h, mi, s = (int(x) for x in time_part.split(":"))
        pub = notice.published_at
        assert pub.isoformat()[:10] == date_part
        assert (pub.hour, pub.minute, pub.second) == (h, mi, s)
        assert pub.utcoffset() == timedelta(hours=int(offset[1:3])) * (1 if offset[0] == "+" else -1)


def test_other_fields(events: list[dict[str, Any]], municipalities: dict[str, str]) -> None:
    for event in events:
        notice = parse_event(event, municipalities=municipalities)
        assert notice.police_id == event["id"]
        assert notice.title == event["name"]
        assert notice.summary == event["summary"]
        assert notice.url == "https://polisen.se" + event["url"]
        assert notice.location_name == event["location"]["name"]
        assert notice.gps == event["location"]["gps"]


def test_unpadded_hours_parse(events: list[dict[str, Any]]) -> None:
    unpadded = [e["datetime"] for e in events if re.match(r"^\S+ \d:", e["datetime"])]
    assert unpadded, "sample should contain unpadded hours"
    for raw in unpadded:
        assert parse_published(raw).hour == int(raw.split(" ")[1].split(":")[0])


def test_unpadded_hour_example() -> None:
    assert parse_published("2026-08-09 7:00:57 +02:00") == datetime(
        2026, 8, 9, 7, 0, 57, tzinfo=timezone(timedelta(hours=2))
    )
    assert parse_published("2026-08-09 07:00:57 +02:00") == parse_published("2026-08-09 7:00:57 +02:00")
    assert parse_published("2024-01-25 8:21:15 +01:00").utcoffset() == timedelta(hours=1)


# ---- synthetic events (no shared data needed) ----

HALLAND = {
    "Hylte": "1315",
    "Halmstad": "1380",
    "Laholm": "1381",
    "Falkenberg": "1382",
    "Varberg": "1383",
    "Kungsbacka": "1384",
}


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": 1,
        "datetime": "2026-01-01 0:10:00 +01:00",
        "name": "31 december 23.50, Brand, Halmstad",
        "summary": "Brand i förråd.",
        "url": "/aktuellt/handelser/2025/december/31/x/",
        "type": "Brand",
        "location": {"name": "Hallands län", "gps": "56.896681,12.803399"},
    }
    event.update(overrides)
    return event


def test_year_boundary_december_to_january() -> None:
    notice = parse_event(_event(), municipalities=HALLAND)
    assert (notice.occurred_at.year, notice.occurred_at.month, notice.occurred_at.day) == (2025, 12, 31)
    assert notice.occurred_at < notice.published_at
    assert notice.municipality_code == "1380"
    assert not notice.county_level


def test_year_boundary_january_published_in_december() -> None:
    notice = parse_event(
        _event(datetime="2025-12-31 23:59:00 +01:00", name="1 januari 00.05, Brand, Varberg"),
        municipalities=HALLAND,
    )
    assert (notice.occurred_at.year, notice.occurred_at.month) == (2026, 1)


def test_unparseable_incident_time_falls_back_to_published() -> None:
    for name in (
        "Brand, Halmstad",
        "31 smörgås 12.00, Brand, Halmstad",
        "30 februari 12.00, Brand, Halmstad",
    ):
        notice = parse_event(_event(name=name), municipalities=HALLAND)
        assert notice.occurred_at == notice.published_at
        assert not notice.occurred_at_from_name


def test_colon_time_form() -> None:
    notice = parse_event(
        _event(datetime="2023-05-01 10:50:48 +02:00", name="01 maj 08:32, Trafikolycka, Halmstad"),
        municipalities=HALLAND,
    )
    assert (notice.occurred_at.hour, notice.occurred_at.minute) == (8, 32)
    assert notice.occurred_at.utcoffset() == timedelta(hours=2)


def test_unknown_type_is_kept() -> None:
    notice = parse_event(
        _event(type="Helt ny typ", name="1 januari 00.05, Helt ny typ, Laholm"), municipalities=HALLAND
    )
    assert (notice.category, notice.known_type) == ("other", False)
    assert notice.municipality_code == "1381"


def test_summary_and_ovrigt_are_county_level_even_with_municipality_location() -> None:
    for police_type in ("Sammanfattning natt", "Övrigt", "Sammanfattning vecka"):
        notice = parse_event(
            _event(
                type=police_type,
                name=f"1 januari 07.00, {police_type}, Halmstad",
                location={"name": "Halmstad"},
            ),
            municipalities=HALLAND,
        )
        assert notice.county_level
        assert (notice.municipality_code, notice.municipality_name) == ("13", "Hallands län")
        assert notice.gps is None


def test_county_location_with_non_municipality_last_part_is_county_level() -> None:
    notice = parse_event(
        _event(name="1 januari 00.05, Bedrägeri, Hallands län", type="Bedrägeri"), municipalities=HALLAND
    )
    assert notice.county_level
    assert notice.municipality_code == "13"


def test_pre_2026_location_is_municipality() -> None:
    notice = parse_event(
        _event(name="1 maj 10.00, Rån, Varberg", type="Rån", location={"name": "Varberg", "gps": "1,2"}),
        municipalities=HALLAND,
    )
    assert (notice.municipality_code, notice.county_level) == ("1383", False)


def test_outside_region_is_rejected_explicitly() -> None:
    with pytest.raises(OutsideRegionError, match=r"location\.name"):
        parse_event(_event(location={"name": "Skåne län", "gps": "1,2"}), municipalities=HALLAND)


def test_absolute_url_is_kept() -> None:
    notice = parse_event(_event(url="https://polisen.se/a/"), municipalities=HALLAND)
    assert notice.url == "https://polisen.se/a/"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "12"}, "id"),
        ({"id": True}, "id"),
        ({"id": -3}, "id"),
        ({"datetime": "2026-01-01T00:10:00+01:00"}, "datetime"),
        ({"datetime": "2026-02-30 1:00:00 +01:00"}, "datetime"),
        ({"datetime": None}, "datetime"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"summary": None}, "summary"),
        ({"url": "aktuellt/x"}, "url"),
        ({"type": ""}, "type"),
        ({"location": "Halmstad"}, "location"),
        ({"location": {"gps": "1,2"}}, "location.name"),
        ({"location": {"name": "Halmstad", "gps": 5}}, "location.gps"),
    ],
)
def test_malformed_events_raise(change: dict[str, Any], field: str) -> None:
    with pytest.raises(FeedParseError, match=re.escape(field)):
        parse_event(_event(**change), municipalities=HALLAND)


def test_missing_field_raises() -> None:
    event = _event()
    del event["url"]
    with pytest.raises(FeedParseError, match="url: missing"):
        parse_event(event, municipalities=HALLAND)
    with pytest.raises(FeedParseError, match="event"):
        parse_event([], municipalities=HALLAND)  # type: ignore[arg-type]


# ---- category table ----


def test_all_observed_types_are_mapped_explicitly() -> None:
    _require_data()
    with TYPES_CSV.open(encoding="utf-8", newline="") as fh:
        types = [row["type"].strip() for row in csv.DictReader(fh)]
    assert len(types) == 97
    assert set(types) == set(TYPE_CATEGORIES)
    for police_type in types:
        category, known = classify(police_type)
        assert known
        assert category in CATEGORIES
    assert classify("Lagen om hundar och katter ") == ("other", True)


def test_expected_categories_agree_with_table() -> None:
    for police_type, category in EXPECTED_CATEGORY.items():
        assert TYPE_CATEGORIES[police_type] == category


def test_burglary_rule_examples() -> None:
    assert classify("Inbrott", "Inbrott i en villa.") == ("residential_burglary", True)
    assert classify("Inbrott", "Inbrott i en butik.") == ("other_burglary", True)
    assert classify("Inbrott, försök", "Försök till inbrott i husbilar.") == ("other_burglary", True)
    assert classify("Larm Inbrott", "Larm från lägenhet.") == ("residential_burglary", True)
    assert classify("Stöld/inbrott", "Stöld ur bil.", "1 maj 10.00, Stöld/inbrott, Varberg") == (
        "theft",
        True,
    )
    assert classify("Stöld/inbrott", "Någon har brutit sig in i ett förråd.") == ("other_burglary", True)
    assert classify("Stöld/inbrott", "Bostadsinbrott.") == ("residential_burglary", True)
    assert not mentions_dwelling("husbil husvagn")
    assert mentions_dwelling("HUSET")


def test_summary_types_map_to_summary() -> None:
    for police_type in ("Sammanfattning natt", "Sammanfattning kväll och natt", "Sammanfattning vecka"):
        assert classify(police_type) == ("summary", True)
    assert classify("Övrigt") == ("other", True)


def test_doc_category_table_is_up_to_date() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert category_table_markdown() in text
    assert replace_table_block(text) == text, (
        "docs/polisen-feed.md is stale; regenerate with replace_table_block (see the doc)"
    )
