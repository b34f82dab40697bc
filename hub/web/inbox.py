"""The live inbox: what one receiver in one municipality may see, newest first, with its legal basis.

``GET /inbox/{receiver}/{code}`` renders the newest deliveries; ``GET /inbox/{receiver}/{code}/events`` is
the server-sent-event stream the page's script listens to, starting exactly where the page ended. Each
item is rendered once, here, for both. The personnummer is masked as ``hub tail`` masks it
(:func:`hub.tail.mask`); a pseudonym (``person_ref``) is shown as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from aiokafka.errors import KafkaError

from hub.contract.errors import ContractError
from hub.contract.outputs import AccessChannel, AreaAlert, Delivery, LagesbildAggregate
from hub.rules.receivers import RECEIVERS
from hub.tail import as_dict
from hub.web import labels
from hub.web.feed import Message, TopicFeed, format_positions, parse_positions
from hub.web.scope import Scope
from hub.web.state import STATE, WebState, forbid, html_response, not_found, require_api, require_page
from hub.web.templates import Html, join, layout, render

log = logging.getLogger(__name__)

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def local_time(at: datetime) -> Html:
    shown = at.astimezone(STOCKHOLM)
    return render('<time datetime="{iso}">{text}</time>', iso=at.isoformat(), text=shown.strftime("%Y-%m-%d %H:%M"))


def alert_period(alert: AreaAlert) -> str:
    """The alert's seven days as dates (the hub counts days in UTC): ``2026-03-04 – 2026-03-10``."""
    return f"{alert.period_start.astimezone(UTC).date()} – {alert.period_end.astimezone(UTC).date()}"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "ja" if value else "nej"
    return "–" if value is None else str(value)


def item_key(record: object, message: Message) -> str:
    """What identifies an item for deduplication: a delivery by its event id (a redelivery after a worker
    crash has the same one), an alert by its id, anything else by where it is stored."""
    if isinstance(record, Delivery):
        return f"d:{record.event_id}"
    if isinstance(record, AreaAlert):
        return f"a:{record.alert_id}"
    return f"m:{message.partition}:{message.offset}"


def _article(key: str, title: str, meta: Html, details: Html) -> Html:
    anchor = "i" + hashlib.sha256(key.encode()).hexdigest()[:12]
    return render(
        '<li class="item" data-key="{key}"><article aria-labelledby="{anchor}">'
        '<h3 id="{anchor}">{title}</h3><p class="meta">{meta}</p>{details}</article></li>',
        key=key, anchor=anchor, title=title, meta=meta, details=details,
    )  # fmt: skip


def _basis(code: str) -> Html:
    return render('<span class="basis">Rättslig grund: <strong>{label}</strong> <code>{code}</code></span>',
                  label=labels.basis(code), code=code)  # fmt: skip


def render_item(record: object, message: Message) -> Html | None:
    """One inbox item (``<li>``), or None for a record an inbox does not show."""
    key = item_key(record, message)
    if isinstance(record, Delivery):
        data = as_dict(record, reveal=False)
        fields: dict[str, Any] = data["fields"]
        rows = [(labels.field(path), _value(v)) for path, v in sorted(fields.items()) if path != "envelope.occurred_at"]
        person = data["personnummer"] or record.person_ref
        if person:
            rows.insert(0, ("Person", person))
        details = render("<dl>{rows}</dl>", rows=join(render("<div><dt>{k}</dt><dd>{v}</dd></div>", k=k, v=v)
                                                        for k, v in rows))  # fmt: skip
        meta = render("{when} · {basis} · <span class=\"eid\">Händelse-id {eid}</span>",
                      when=local_time(record.occurred_at), basis=_basis(record.legal_basis), eid=record.event_id)
        return _article(key, labels.event_type(record.event_type), meta, details)
    if isinstance(record, AreaAlert):
        details = render(
            "<p>{n} {cat} i området {area} under {period} (snitt tidigare: {mean} per vecka). "
            "Tröskel: {threshold}.</p>",
            n=record.count_7d, cat=labels.category(record.category).lower(), area=record.area,
            period=alert_period(record),
            mean=f"{record.trailing_weekly_mean:.1f}".replace(".", ","), threshold=record.threshold,
        )  # fmt: skip
        meta = render("{period} · {basis}", period=alert_period(record), basis=_basis("aggregated"))
        return _article(key, f"Larm: {labels.category(record.category)} i {record.area}", meta, details)
    if isinstance(record, LagesbildAggregate):
        count = "<3" if record.suppressed else str(record.count)
        where = record.area or "hela kommunen"
        details = render('<p>{cat}, {where}, {period}: <strong class="count">{count}</strong></p>',
                         cat=labels.category(record.category), where=where, period=record.period, count=count)
        meta = render("{when} · {basis}", when=local_time(record.updated_at), basis=_basis("aggregated"))
        return _article(key, f"Lägesbild: {labels.category(record.category)}", meta, details)
    return None


def _decode(state: WebState, message: Message) -> object | None:
    try:
        return state.serde.decode(message.value)
    except ContractError as exc:
        log.warning("web: undecodable message at partition %d offset %d (%s)", message.partition, message.offset,
                    exc.reason)  # fmt: skip
        return None


def _checked(request: web.Request, *, api: bool) -> tuple[WebState, Scope, str, str]:
    state = request.app[STATE]
    scope = require_api(request) if api else require_page(request)
    receiver, code = request.match_info["receiver"], request.match_info["code"]
    if not scope.may_see_inbox(receiver, code):
        raise forbid(request, scope)
    if receiver not in RECEIVERS or code not in state.codes:
        raise not_found(scope)
    return state, scope, receiver, code


async def inbox_page(request: web.Request) -> web.Response:
    state, scope, receiver, code = _checked(request, api=False)
    limit = state.settings.web.inbox_size
    feed = TopicFeed(state.inbox_kafka(receiver, code), state.topics.deliver(receiver, code))
    messages, positions = await feed.recent(limit)
    seen: set[str] = set()
    items: list[Html] = []
    shown: list[str] = []
    for m in messages:
        record = _decode(state, m)
        if record is None or (key := item_key(record, m)) in seen:
            continue
        seen.add(key)
        if (item := render_item(record, m)) is not None:
            items.append(item)
            if isinstance(record, Delivery):
                shown.append(record.event_id)
    topic = state.topics.deliver(receiver, code)
    await state.record_view(state.read(scope, AccessChannel.web_inbox, topic, receiver, code), len(items), shown)
    title = f"Inkorg – {labels.receiver(receiver)}, {labels.municipality(code)}"
    stream = f"/inbox/{receiver}/{code}/events?from={format_positions(positions)}"
    body = render(
        "<h1>{title}</h1>"
        "<p>Här visas det som <strong>{receiver}</strong> i {where} får ta del av, det senaste först, med den "
        "rättsliga grunden för varje uppgift. Personnummer visas maskerade. Nya leveranser visas direkt utan "
        "att sidan laddas om.</p>"
        '<p id="stream-status" class="stream-status" role="status" data-state="connecting">Ansluter till '
        "liveflödet …</p>"
        '<h2 id="inbox-heading">Senaste leveranser <span class="count-note">(<span id="inbox-count">{n}</span> '
        "visas)</span></h2>"
        '<p id="inbox-empty"{hidden}>Inga leveranser ännu.</p>'
        '<ol id="inbox" class="inbox" aria-labelledby="inbox-heading" aria-live="polite" aria-relevant="additions" '
        'data-stream="{stream}" data-max="{limit}">{items}</ol>',
        title=title, receiver=labels.receiver(receiver), where=labels.municipality(code), n=len(items),
        hidden=Html(" hidden") if items else Html(""), stream=stream, limit=limit, items=join(items),
    )  # fmt: skip
    response = html_response(layout(title, body, scope, f"/inbox/{receiver}/{code}"))
    response.headers["Cache-Control"] = "no-store"
    return response


def _event(event: str, data: str, event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in data.splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


async def inbox_events(request: web.Request) -> web.StreamResponse:
    """The live stream: ``event: item`` with one rendered ``<li>`` per delivery, ``id`` = the position after it;
    ``event: end`` when the session ends. 401 without a login, 403 outside the user's scope."""
    state, scope, receiver, code = _checked(request, api=True)
    session = state.session(request)
    if session is None:  # expired between the two checks
        raise web.HTTPUnauthorized(text="inloggning krävs", content_type="text/plain")
    try:
        start = parse_positions(request.headers.get("Last-Event-ID") or request.query.get("from", ""))
    except ValueError:
        raise web.HTTPBadRequest(text="ogiltig position", content_type="text/plain") from None
    topic = state.topics.deliver(receiver, code)
    reads = state.access.session(state.read(scope, AccessChannel.web_stream, topic, receiver, code))
    await reads.start()  # before anything is streamed (a KafkaError here is the middleware's 503)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip
    await response.prepare(request)
    metrics = state.metrics
    metrics.sse_clients.inc()
    heartbeat = state.settings.web.sse_heartbeat_s
    last_write = time.monotonic()
    feed = TopicFeed(state.inbox_kafka(receiver, code), state.topics.deliver(receiver, code))
    try:
        await response.write(b"retry: 3000\n\n")
        async with contextlib.aclosing(feed.follow(start, state.stop)) as stream:
            async for message, positions in stream:
                if request.transport is None or request.transport.is_closing():
                    break
                if not state.still_valid(session):
                    await response.write(_event("end", "Sessionen har upphört. Logga in igen."))
                    break
                if message is None:
                    if time.monotonic() - last_write >= heartbeat:
                        await response.write(b": keep-alive\n\n")
                        last_write = time.monotonic()
                    continue
                record = _decode(state, message)
                item = render_item(record, message) if record is not None else None
                if item is None:
                    continue
                await reads.showing(1, [record.event_id] if isinstance(record, Delivery) else [])
                await response.write(_event("item", item, format_positions(positions)))
                last_write = time.monotonic()
                metrics.items_pushed.labels(receiver).inc()
    except ConnectionResetError:
        pass  # the browser went away
    except KafkaError as exc:  # the stream ends; the browser reconnects after 3 s from its last event id
        log.warning("web: live inbox %s.%s lost Kafka (%s)", receiver, code, type(exc).__name__)
    finally:
        metrics.sse_clients.dec()
        try:
            await reads.end()
        except KafkaError as exc:  # what it showed is recorded already; only the total is missing
            log.warning("web: the end of a live inbox session of %s.%s was not recorded (%s)", receiver, code,
                        type(exc).__name__)  # fmt: skip
    return response
