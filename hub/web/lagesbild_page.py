"""The lägesbild page of a municipality or the county (13): weekly counts per category as charts and a
table ("<3" for suppressed counts), neighbourhood-watch alerts and the follow-up of citizen promises.

Everything comes from what left the hub: ``deliver.lagesbild.<code>`` (:func:`hub.report.load`), the
area alerts on ``deliver.grannsamverkan.<code>`` and the citizen-promise follow-up of
:func:`hub.report.indicators`. None of it holds personal data. The county page shows the county totals and
the alerts and follow-ups of every municipality in the county.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from typing import Any

from aiohttp import web

from hub import report
from hub.charts import weekly_chart
from hub.contract.errors import ContractError
from hub.contract.outputs import AccessChannel, AreaAlert
from hub.kafka.read import read_to_end
from hub.web import labels
from hub.web.inbox import alert_period
from hub.web.scope import Scope
from hub.web.state import STATE, WebState, forbid, html_response, not_found, require_api, require_page
from hub.web.templates import Html, join, layout, render, table

WEEKS = 12
_CHART_LOCK = threading.Lock()
"""matplotlib's pyplot is not thread-safe: one chart is drawn at a time."""


def _draw(rows: list[report.Row], title: str) -> bytes:
    """The chart of :mod:`hub.charts` (as ``hub lagesbild --png`` draws it) as SVG, with Swedish category names."""
    with _CHART_LOCK:
        return weekly_chart([replace(r, category=labels.category(r.category)) for r in rows], title, "svg", WEEKS)


def weekly_periods(rows: list[report.Row], weeks: int) -> list[str]:
    """The last ``weeks`` reported weeks of the municipality-wide counts (as ``hub lagesbild`` shows them)."""
    return sorted({r.period for r in rows if r.area is None})[-weeks:]


def _checked(request: web.Request, scope: Scope) -> tuple[WebState, str]:
    state = request.app[STATE]
    code = request.match_info["code"]
    if not scope.may_see_lagesbild(code):
        raise forbid(request, scope)
    if code not in state.codes:
        raise not_found(scope)
    return state, code


def _municipalities(state: WebState, code: str) -> list[str]:
    return list(state.settings.municipality_codes) if code == state.settings.county_code else [code]


async def _alerts(state: WebState, codes: list[str]) -> list[AreaAlert]:
    alerts: dict[str, AreaAlert] = {}
    for c in codes:  # each municipality's as its lägesbild inbox (which may read its grannsamverkan alerts)
        async for m in read_to_end(state.inbox_kafka("lagesbild", c), [state.topics.deliver("grannsamverkan", c)]):
            try:
                record = state.serde.decode(m.value)
            except ContractError:
                continue
            if isinstance(record, AreaAlert):
                alerts[record.alert_id] = record
    return sorted(alerts.values(), key=lambda a: a.period_end, reverse=True)[:20]


async def _follow_ups(state: WebState, codes: list[str]) -> list[dict[str, Any]]:
    reads = (report.indicators(state.settings, state.inbox_kafka("lagesbild", c), c) for c in codes)
    return list(await asyncio.gather(*reads))


def _counts_table(rows: list[report.Row], where: str) -> Html:
    periods = weekly_periods(rows, WEEKS)
    categories = sorted({r.category for r in rows if r.area is None and r.period in periods},
                        key=labels.category)  # fmt: skip
    cell = {(r.category, r.period): r.shown for r in rows if r.area is None}
    body = [[labels.category(c), *[cell.get((c, p), "") for p in periods]] for c in categories]
    return table(f"Antal per vecka och kategori, {where} (antal under 3 visas som <3)",
                 ["Kategori", *periods], body, css="counts")  # fmt: skip


def _alerts_section(alerts: list[AreaAlert]) -> Html:
    if not alerts:
        return render("<p>Inga larm om inbrottsvågor.</p>")
    items = join(
        render('<li class="alert-item"><strong>{cat} i {area}</strong>, {where}: {n} på sju dagar '
               "(snitt tidigare {mean} per vecka), {period}</li>",
               cat=labels.category(a.category), area=a.area, where=labels.municipality(a.municipality_code),
               n=a.count_7d, mean=f"{a.trailing_weekly_mean:.1f}".replace(".", ","), period=alert_period(a))
        for a in alerts
    )  # fmt: skip
    return render('<ul class="alerts">{items}</ul>', items=items)


def _change(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.0f} %".replace("-", "−")


def _promises_section(results: list[dict[str, Any]]) -> Html:
    rows = [[p["promise_id"], labels.municipality(r["municipality"]), p["area"] or "hela kommunen",
             labels.category(p["category"]), p["action_date"], p["before"], p["after"], _change(p["change"])]
            for r in results for p in r["citizen_promises"]]  # fmt: skip
    if not rows:
        return render("<p>Inga åtgärder under medborgarlöften har rapporterats.</p>")
    return table("Antal händelser i området och kategorin fyra veckor före åtgärden och fyra veckor från den",
                 ["Medborgarlöfte", "Kommun", "Område", "Kategori", "Åtgärdsdatum", "Före", "Efter", "Förändring"],
                 rows, css="promises")  # fmt: skip


def _watch_section(result: dict[str, Any]) -> Html:
    effect = result["neighbourhood_watch_effect"]
    if not result["watch_areas"] or not effect["weeks"]:
        return render("<p>Inga registrerade grannsamverkansområden att jämföra ännu.</p>")
    diff = effect["relative_difference"]
    return render(
        "<p>Bostadsinbrott per område och vecka de senaste {weeks} veckorna: <strong>{watch}</strong> i områden "
        "med grannsamverkan ({areas}) mot <strong>{rest}</strong> i övriga områden ({diff}).</p>",
        weeks=effect["weeks"], watch=f"{effect['watch_per_week']:.2f}".replace(".", ","),
        areas=", ".join(result["watch_areas"]), rest=f"{effect['rest_per_week']:.2f}".replace(".", ","),
        diff="ingen jämförelse" if diff is None else f"{_change(diff)} skillnad",
    )  # fmt: skip


async def lagesbild_page(request: web.Request) -> web.Response:
    scope = require_page(request)
    state, code = _checked(request, scope)
    codes = _municipalities(state, code)
    rows, alerts, follow = await asyncio.gather(report.load(state.settings, state.inbox_kafka("lagesbild", code), code),
                                                _alerts(state, codes), _follow_ups(state, codes))  # fmt: skip
    where = labels.municipality(code)
    title = f"Lägesbild – {where}"
    periods = weekly_periods(rows, WEEKS)
    span = f"{periods[0]}–{periods[-1]}" if periods else "inga veckor ännu"
    watch = _watch_section(follow[0]) if len(codes) == 1 else Html("")
    read = state.read(scope, AccessChannel.web_lagesbild, f"/lagesbild/{code}", "lagesbild", code)
    await state.record_view(read, len(rows) + len(alerts))
    body = render(
        "<h1>{title}</h1>"
        "<p>Antal händelser per vecka och kategori som lämnat hubben till lägesbilden ({span}). Antal under 3 "
        "visas som <strong>&lt;3</strong> så att ingen enskild kan pekas ut.</p>"
        "<h2>Antal per vecka</h2>"
        '<figure class="chart"><img id="lagesbild-chart" src="/lagesbild/{code}/chart.svg" width="900" '
        'alt="Stapeldiagram över antal per vecka och kategori i {where}; samma siffror finns i tabellen nedan.">'
        "<figcaption>Staplar märkta &lt;3 är antal under 3; de ritas utan höjd.</figcaption></figure>"
        "{counts}"
        "<h2>Larm till grannsamverkan</h2>{alerts}"
        "<h2>Uppföljning av medborgarlöften</h2>{promises}"
        "{watch_heading}{watch}",
        title=title, span=span, code=code, where=where, counts=_counts_table(rows, where),
        alerts=_alerts_section(alerts), promises=_promises_section(follow),
        watch_heading=render("<h2>Grannsamverkans effekt</h2>") if watch else Html(""), watch=watch,
    )  # fmt: skip
    return html_response(layout(title, body, scope, f"/lagesbild/{code}"))


async def lagesbild_chart(request: web.Request) -> web.Response:
    scope = require_api(request)
    state, code = _checked(request, scope)
    rows = await report.load(state.settings, state.inbox_kafka("lagesbild", code), code)
    svg = await asyncio.to_thread(_draw, rows, f"Lägesbild {labels.municipality(code)}")
    return web.Response(body=svg, content_type="image/svg+xml", headers={"Cache-Control": "no-store"})
