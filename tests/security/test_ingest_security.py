"""The ingest gateway against hostile input: what tests/connectors/test_gateway.py and the fuzz suite leave out.

Credentials (missing, wrong, expired, another agency's, another municipality's), a spoofed
``source_agency`` and body limits are proven there (see tests/security/README.md); here: ambiguous or
malformed token configuration, the credential id, the expiry boundary, a JSON ``null``, and an event larger
than Kafka takes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from connectors.gateway import Authenticator, credential_id, hash_token
from hub.identity import SourceUnit
from tests.connectors.test_gateway import (
    KOMMUN_TOKEN,
    Client,
    consume,
    ndjson,
    post,
    settings_for,
    with_gateway,
    youth,
)

CODES = ("1315", "1380", "1381", "1382", "1383", "1384")
"""The served municipalities (Halland's six, as the default settings)."""

# -- token configuration ----------------------------------------------------------------------------------


def test_one_token_for_two_agencies_is_refused_at_start() -> None:
    shared = hash_token("shared-token")
    with pytest.raises(ValueError, match="same token is configured for source units 'polisen' and 'kommun-1381'"
                       ) as info:  # fmt: skip
        Authenticator({"polisen": [shared], "kommun-1381": [hash_token("other"), f"{shared}@2099-01-01T00:00:00Z"]},
                      CODES)  # fmt: skip
    assert shared not in str(info.value)
    # Nor for two municipalities: a request's municipality would be a guess.
    with pytest.raises(ValueError, match="source units 'kommun-1380' and 'kommun-1381'"):
        Authenticator({"kommun-1380": [shared], "kommun-1381": [shared]}, CODES)
    # The same token twice for one unit (e.g. while rotating its expiry) is not ambiguous.
    auth = Authenticator({"kommun-1381": [shared, f"{shared}@2099-01-01T00:00:00Z"]}, CODES)
    result = auth.authenticate("Bearer shared-token")
    assert (result.status, result.unit, result.agency) == ("ok", SourceUnit("kommun", "1381"), "kommun")


def test_the_plain_agency_kommun_is_not_a_token_key() -> None:
    """Regression (issue #13): one "kommun" token spoke for all six municipalities."""
    with pytest.raises(ValueError, match="publishes per municipality") as info:
        Authenticator({"kommun": [hash_token("t")]}, CODES)
    assert str(info.value) == ("HUB_INGEST__TOKENS key 'kommun': kommun publishes per municipality: use "
                               "kommun-<code> (one of kommun-1315, kommun-1380, kommun-1381, kommun-1382, "
                               "kommun-1383, kommun-1384)")  # fmt: skip
    with pytest.raises(ValueError, match="HUB_INGEST__TOKENS key 'kommun-1480': unknown source unit"):
        Authenticator({"kommun-1480": [hash_token("t")]}, CODES)  # Gothenburg: not served here


def test_the_credential_id_names_the_unit_and_a_digest_prefix_never_the_token() -> None:
    auth = Authenticator({"kommun-1381": [hash_token("laholm-token")], "polisen": [hash_token("police-token")]},
                         CODES)  # fmt: skip
    laholm = auth.authenticate("Bearer laholm-token")
    assert laholm.credential == f"kommun-1381:{hash_token('laholm-token')[:12]}"
    assert laholm.credential == credential_id(SourceUnit("kommun", "1381"), bytes.fromhex(hash_token("laholm-token")))
    assert auth.authenticate("Bearer police-token").credential == f"polisen:{hash_token('police-token')[:12]}"
    assert auth.authenticate("Bearer other").credential is None


@pytest.mark.parametrize("entry", ["not-a-digest", "ab" * 31, "zz" * 32, "ab" * 32 + "@tomorrow"])
def test_malformed_token_entries_are_refused_without_echoing_them(entry: str) -> None:
    with pytest.raises(ValueError, match="HUB_INGEST__TOKENS: a token entry of 'polisen'") as info:
        Authenticator({"polisen": [entry]}, CODES)
    assert entry.partition("@")[0] not in str(info.value)


def test_a_token_is_expired_from_its_expiry_instant_on() -> None:
    expires = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
    auth = Authenticator({"kriminalvarden": [f"{hash_token('kv-token')}@{expires.isoformat()}"]}, CODES)
    assert auth.authenticate("Bearer kv-token", now=expires - timedelta(milliseconds=1)).status == "ok"
    assert auth.authenticate("Bearer kv-token", now=expires).status == "expired"
    # An expiry without an offset is UTC, not the machine's local time.
    naive = Authenticator({"kriminalvarden": [f"{hash_token('kv-token')}@2026-09-01T12:00:00"]}, CODES)
    assert naive.authenticate("Bearer kv-token", now=expires - timedelta(seconds=1)).status == "ok"
    assert naive.authenticate("Bearer kv-token", now=expires).status == "expired"


# -- bodies -----------------------------------------------------------------------------------------------


@pytest.mark.kafka
def test_json_null_is_refused_as_not_an_event_with_a_message(kafka_bootstrap: str, tmp_path: Path,
                                                             unique: Callable[[str], str]) -> None:  # fmt: skip
    """Regression: a JSON ``null`` was taken for unparsable input and answered 400 with ``message: null``."""
    ns = unique("sec")
    settings = settings_for(kafka_bootstrap, tmp_path, ns)
    good = youth(1)

    async def body(client: Client, app: web.Application) -> None:
        r = await post(client, "null", KOMMUN_TOKEN)
        assert r.status == 422
        out = await r.json()
        assert out["rejected"] == [{"line": 1, "status": 422, "errors": [
            {"path": None, "message": "an event is a JSON object with envelope and payload"}]}]  # fmt: skip
        r = await post(client, ndjson("null", good, " null "), KOMMUN_TOKEN, ndjson_body=True)
        assert r.status == 202
        out = await r.json()
        assert [a["line"] for a in out["accepted"]] == [2]
        assert [(x["line"], x["status"]) for x in out["rejected"]] == [(1, 422), (3, 422)]
        got = await consume(settings, f"{ns}.agency.kommun.1381.events", 1)
        assert [str(e.envelope.event_id) for _, e in got] == [good["envelope"]["event_id"]]

    asyncio.run(with_gateway(settings, body))


@pytest.mark.kafka
def test_an_event_too_large_for_kafka_is_413_and_the_events_around_it_are_published(
    kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    """Regression: with a body limit above Kafka's message limit, such an event made the whole request a
    503 "retry" — for it (which can never succeed) and for every good event after it."""
    ns = unique("sec")
    settings = settings_for(kafka_bootstrap, tmp_path, ns, max_body_bytes=4 * 1024 * 1024, ack_timeout_s=20)
    before, after = youth(1), youth(2)
    big = youth(3)
    big["envelope"]["source_unit"] = "fritidsgården " * 110_000  # about 1.5 MB: under the body limit

    async def body(client: Client, app: web.Application) -> None:
        r = await post(client, ndjson(before, big, after), KOMMUN_TOKEN, ndjson_body=True)
        out = await r.json()
        assert r.status == 202, out
        assert "Retry-After" not in r.headers
        assert [a["line"] for a in out["accepted"]] == [1, 3]
        [rejected] = out["rejected"]
        assert (rejected["line"], rejected["status"]) == (2, 413)
        assert "larger than Kafka accepts" in rejected["errors"][0]["message"]
        got = await consume(settings, f"{ns}.agency.kommun.1381.events", 2)
        assert sorted(str(e.envelope.event_id) for _, e in got) == sorted(
            [before["envelope"]["event_id"], after["envelope"]["event_id"]])  # fmt: skip
        alone = await post(client, json.dumps(big), KOMMUN_TOKEN)
        assert alone.status == 413
        assert "Retry-After" not in alone.headers

    asyncio.run(with_gateway(settings, body))
