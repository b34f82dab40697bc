"""The police open-feed connector: poll, parse, publish each new notice once.

``hub connector polisen-feed`` polls ``<base_url>/api/events`` (within the API's rules: a User-Agent,
at least 10 s between calls, at most 60 calls an hour), maps every event it has not published before to
a ``polisen.incident_notice`` and publishes it through the connector base. The police ids already
published are kept in the checkpoint, so neither a later poll nor a restart publishes a notice twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.base import Connector
from connectors.polisen_feed.client import FeedFetchError, PolisenClient, RateLimiter
from connectors.polisen_feed.mapping import FeedParseError, OutsideRegionError, PoliceNotice, parse_event
from hub import identity
from hub.contract.envelope import Envelope
from hub.contract.events import IncidentNotice, IncidentNoticePayload
from hub.settings import HubSettings

log = logging.getLogger(__name__)

#: Halland's municipalities by name (SCB codes, county 13), as the feed spells them.
HALLAND = {"Hylte": "1315", "Halmstad": "1380", "Laholm": "1381", "Falkenberg": "1382", "Varberg": "1383",
           "Kungsbacka": "1384"}  # fmt: skip
_NAMESPACE = uuid.UUID("6f1c3e0a-56a4-4b0e-9f5e-3d1b7c2a9e10")
_KEEP_IDS = 20_000


def to_event(notice: PoliceNotice, recorded_at: datetime | None = None) -> IncidentNotice:
    """The canonical event for a parsed notice; its id is derived from the police id (stable)."""
    return IncidentNotice(
        envelope=Envelope(
            event_id=uuid.uuid5(_NAMESPACE, f"polisen:{notice.police_id}"),
            event_type=IncidentNotice.EVENT_TYPE,
            schema_version=1,
            source_agency="polisen",
            source_unit="polisen.se öppna händelser",
            municipality_code=notice.municipality_code,
            area=None,
            occurred_at=notice.occurred_at,
            recorded_at=recorded_at or notice.published_at,
            subject=None,
            data_class="public",
        ),
        payload=IncidentNoticePayload(
            police_id=notice.police_id, police_type=notice.police_type, category=notice.category,
            title=notice.title, summary=notice.summary, url=notice.url, location_name=notice.location_name,
            gps=notice.gps, published_at=notice.published_at, county_level=notice.county_level,
        ),
    )  # fmt: skip


def new_events(raw: Sequence[Mapping[str, Any]], seen: set[int]) -> tuple[list[IncidentNotice], int]:
    """Events for the notices not in ``seen`` (oldest first) and how many could not be parsed."""
    fresh: list[IncidentNotice] = []
    skipped = 0
    for item in sorted(raw, key=lambda r: int(r.get("id", 0) or 0)):
        try:
            notice = parse_event(item, municipalities=HALLAND)
        except OutsideRegionError:
            continue
        except FeedParseError as exc:
            skipped += 1
            log.warning("police feed: skipping an event that does not parse: %s", exc)
            continue
        if notice.police_id not in seen:
            fresh.append(to_event(notice, datetime.now(UTC)))
    return fresh, skipped


class PolisenFeedConnector(Connector):
    """Polls the police's public events API and publishes new notices (as ``connector-polisen-feed``, which may
    write ``agency.polisen.events`` only)."""

    default_principal = identity.POLISEN_FEED

    def __init__(self, settings: HubSettings, *, base_url: str = "https://polisen.se", polls: int | None = None,
                 min_interval_s: float = 10.0, user_agent: str = "SamverkanHub/0.1 (samverkan-hub operators)",
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(settings, name="polisen-feed", **kwargs)
        self.base_url = base_url
        self.polls = polls
        self.min_interval_s = min_interval_s
        self.user_agent = user_agent

    async def run(self) -> AsyncIterator[IncidentNotice]:
        seen: set[int] = set(self.checkpoint.get("published_ids", []))
        limiter = RateLimiter(min_interval_s=self.min_interval_s, max_per_hour=60)
        async with PolisenClient(self.base_url, user_agent=self.user_agent, rate_limiter=limiter) as client:
            done = 0
            while not self.stopping and (self.polls is None or done < self.polls):
                done += 1
                try:
                    raw = await client.fetch_events()
                except FeedFetchError as exc:
                    log.warning("police feed: %s; trying again at the next poll", exc)
                    continue
                events, _skipped = new_events(raw, seen)
                for event in events:
                    seen.add(event.payload.police_id)
                    self.checkpoint["published_ids"] = sorted(seen)[-_KEEP_IDS:]
                    yield event
