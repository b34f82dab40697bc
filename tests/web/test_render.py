"""What the pages put on screen, rendered without a server: masking, escaping, legal bases, suppression."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hub.contract.outputs import AreaAlert, Delivery, LagesbildAggregate, PeriodKind
from hub.web import labels
from hub.web.feed import Message, format_positions, parse_positions
from hub.web.inbox import render_item
from hub.web.templates import Html, render, table
from tests import factories as f

AT = datetime(2026, 8, 14, 12, 0, tzinfo=UTC)
MSG = Message(0, 7, 0, b"")


def delivery(**kw: object) -> Delivery:
    base: dict[str, object] = dict(
        receiver="socialtjanst", municipality_code="1381", legal_basis="statute:LUL-6§", event_id="e-1",
        event_type="polisen.minor_suspected", personnummer=f.MINOR, occurred_at=AT, delivered_at=AT,
        fields={"envelope.occurred_at": json.dumps(AT.isoformat()), "payload.case_id": json.dumps("5000-K1"),
                "payload.offence_description": json.dumps("<script>alert(1)</script> & mer"),
                "payload.guardian_notified": "true"},
    )  # fmt: skip
    return Delivery.model_validate({**base, **kw})


def test_a_delivery_shows_its_legal_basis_and_a_masked_personnummer() -> None:
    html = render_item(delivery(), MSG)
    assert html is not None
    assert 'data-key="d:e-1"' in html
    assert "Underrättelse: minderårig misstänkt för brott" in html
    assert "Rättslig grund: <strong>Lagstöd (LUL-6§)</strong> <code>statute:LUL-6§</code>" in html
    assert f"{f.MINOR[:8]}-****" in html
    assert f.MINOR not in html
    assert "<dt>Ärendenummer</dt><dd>5000-K1</dd>" in html
    assert "<dt>Vårdnadshavare underrättad</dt><dd>ja</dd>" in html
    assert '<time datetime="2026-08-14T12:00:00+00:00">2026-08-14 14:00</time>' in html  # Swedish time


def test_text_from_records_is_escaped() -> None:
    html = render_item(delivery(event_id='"><img src=x onerror=alert(1)>'), MSG)
    assert html is not None
    assert "<script>" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; mer" in html
    assert render("<p>{x}</p>", x="<b>") == "<p>&lt;b&gt;</p>"
    assert render("<p>{x}</p>", x=Html("<b>ok</b>")) == "<p><b>ok</b></p>"
    assert "<td>&lt;3</td>" in table("c", ["a", "b"], [["x", "<3"]])


def test_a_pseudonymous_delivery_shows_the_pseudonym_and_no_number() -> None:
    html = render_item(delivery(receiver="sig", legal_basis="consent:sig", personnummer=None, person_ref="p-abc"), MSG)
    assert html is not None
    assert "<dt>Person</dt><dd>p-abc</dd>" in html
    assert "Samtycke (sig)" in html


def test_alerts_and_aggregates_are_items_with_an_aggregated_basis() -> None:
    alert = AreaAlert(alert_id="a-1", municipality_code="1381", area="Skottorp", category="residential_burglary",
                      count_7d=5, trailing_weekly_mean=0.5, period_start=AT, period_end=AT, threshold="t")  # type: ignore[arg-type]
    html = render_item(alert, MSG)
    assert html is not None
    assert "Larm: Bostadsinbrott i Skottorp" in html
    assert 'data-key="a:a-1"' in html
    hidden = LagesbildAggregate(municipality_code="1381", category="vandalism", period_kind=PeriodKind.week,
                                period="2026-W33", count=None, suppressed=True, updated_at=AT)  # fmt: skip
    html = render_item(hidden, MSG)
    assert html is not None
    assert '<strong class="count">&lt;3</strong>' in html
    assert "Aggregerat (inga personuppgifter)" in html
    assert 'data-key="m:0:7"' in html


def test_labels_fall_back_to_the_code() -> None:
    assert labels.basis("consent:release_planning") == "Samtycke (release_planning)"
    assert labels.basis("public") == "Offentlig uppgift"
    assert labels.category("something_new") == "something_new"
    assert labels.municipality("1381") == "Laholm (1381)"
    assert labels.municipality("9999") == "9999"


def test_stream_positions_round_trip_and_reject_anything_else() -> None:
    assert parse_positions(format_positions({1: 4, 0: 17})) == {0: 17, 1: 4}
    assert parse_positions("") == {}
    for bad in ("0:", ":1", "0:1;", "a:1", "0:1,,1:2", "0:-1", "0:1 "):
        with pytest.raises(ValueError, match="malformed"):
            parse_positions(bad)
