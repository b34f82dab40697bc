"""The operations page: throughput, dead letters by reason, consumer lag, the audit chain, reconciliation.

- Throughput comes from the worker's own ``/metrics`` (``HUB_WEB__WORKER_METRICS_URL``), sampled in the
  background every few seconds so a rate is ready when the page opens.
- Dead letters are read from ``hub.deadletter``: counts per reason and the latest messages with their
  readable, already redacted text (and redacted once more here); the original bytes are never shown.
- Lag: the worker group's committed offsets (``HUB_WORKER__APP_ID``) against the end of each partition.
- The audit chain is verified with :func:`hub.audit.verify`; reconciliation is :func:`hub.reconcile.reconcile`.

What is read from Kafka is reused for ``HUB_WEB__OPERATOR_CACHE_S`` seconds. A source that cannot be read
shows as such; the rest of the page still renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from hub.audit import TrailError, VerifyResult, read_trail, verify
from hub.contract.errors import ContractError
from hub.contract.outputs import AccessChannel, Deadletter
from hub.kafka import clients
from hub.kafka.read import read_to_end
from hub.logsafety import redact
from hub.reconcile import Reconciliation, reconcile
from hub.web import labels
from hub.web.inbox import local_time
from hub.web.state import WebState, forbid, html_response, require_page
from hub.web.templates import Html, join, layout, render, table

log = logging.getLogger(__name__)

T = TypeVar("T")
SAMPLE_EVERY_S = 5.0


@dataclass
class WorkerSample:
    at: float
    received: float
    deliveries: dict[str, float]
    refused: float
    deadletters: float
    duplicates: float
    mean_processing_s: float | None


@dataclass
class Lag:
    topic: str
    partitions: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass
class Deadletters:
    by_reason: Counter[str]
    latest: dict[str, list[Deadletter]]


@dataclass
class OperatorData:
    """The page's sources, sampled and cached."""

    state: WebState
    samples: list[WorkerSample] = field(default_factory=list)
    scrape_error: str | None = None
    cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    @property
    def metrics_url(self) -> str:
        s = self.state.settings
        return s.web.worker_metrics_url or f"http://{s.worker.web_host}:{s.worker.web_port}/metrics"

    # -- worker metrics ------------------------------------------------------------------------------

    async def scrape(self) -> WorkerSample | None:
        try:
            timeout = aiohttp.ClientTimeout(total=2)
            async with aiohttp.ClientSession(timeout=timeout) as s, s.get(self.metrics_url) as r:
                if r.status != 200:
                    self.scrape_error = f"HTTP {r.status}"
                    return None
                text = await r.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.scrape_error = type(exc).__name__
            return None
        self.scrape_error = None
        totals: dict[str, float] = defaultdict(float)
        deliveries: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] += sample.value
                if sample.name == "hub_deliveries_total":
                    deliveries[sample.labels.get("receiver", "")] = sample.value
        count = totals["hub_processing_seconds_count"]
        sample_ = WorkerSample(time.monotonic(), totals["hub_events_received_total"], deliveries,
                               totals["hub_refusals_total"], totals["hub_deadletters_total"],
                               totals["hub_duplicates_total"],
                               totals["hub_processing_seconds_sum"] / count if count else None)  # fmt: skip
        self.samples = [*self.samples[-11:], sample_]
        return sample_

    async def sample_forever(self) -> None:
        while not self.state.stop.is_set():
            await self.scrape()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.state.stop.wait(), SAMPLE_EVERY_S)

    # -- health checks for alerting ------------------------------------------------------------------

    async def check_forever(self) -> None:
        """Every ``HUB_WEB__HEALTH_CHECK_S``: the audit chain and the topics' replication, as gauges."""
        while not self.state.stop.is_set():
            await self.check_health()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.state.stop.wait(), self.state.settings.web.health_check_s)

    async def check_health(self) -> None:
        metrics = self.state.metrics
        try:
            result = await self.audit()
        except TrailError:
            metrics.audit_intact.set(0)
        except Exception as exc:  # unreadable now: the gauge keeps its last value, the check's time goes stale
            log.warning("web: the audit chain check could not read the trail (%s)", type(exc).__name__)
        else:
            metrics.audit_intact.set(1 if result.ok else 0)
            metrics.audit_records.set(result.records)
            metrics.checked_at.labels("audit").set(time.time())
        try:
            metrics.under_replicated.set(await self.under_replicated())
            metrics.checked_at.labels("replication").set(time.time())
        except Exception as exc:
            log.warning("web: the replication check failed (%s)", type(exc).__name__)

    async def under_replicated(self) -> int:
        """Partitions of the hub's topics whose in-sync replicas are fewer than their replicas."""
        from hub.kafka.admin import hub_topics

        admin = clients.admin(self.state.kafka())
        try:
            await admin.start()
            described = await admin.describe_topics([s.name for s in hub_topics(self.state.settings)])
        finally:
            await admin.close()
        return sum(len(p.get("isr", [])) < len(p.get("replicas", [])) for t in described
                   for p in t.get("partitions") or [])  # fmt: skip

    def rate(self) -> float | None:
        """Events per second over the samples of the last minute."""
        if len(self.samples) < 2:
            return None
        first, last = self.samples[0], self.samples[-1]
        if last.at - first.at < 1 or last.received < first.received:
            return None
        return (last.received - first.received) / (last.at - first.at)

    # -- Kafka sources, cached ------------------------------------------------------------------------

    async def cached(self, key: str, load: Callable[[], Awaitable[T]]) -> T | Exception:
        async with self.locks[key]:
            hit = self.cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.state.settings.web.operator_cache_s:
                value: T | Exception = hit[1]
                return value
            try:
                value = await load()
            except Exception as exc:  # shown on the page as unreadable; the page still renders
                log.warning("web: operations page could not read %s (%s)", key, type(exc).__name__)
                value = exc
            self.cache[key] = (time.monotonic(), value)
            return value

    async def deadletters(self) -> Deadletters:
        by_reason: Counter[str] = Counter()
        latest: dict[str, list[Deadletter]] = defaultdict(list)
        async for m in read_to_end(self.state.kafka(), [self.state.topics.deadletter]):
            try:
                d = self.state.serde.decode(m.value)
            except ContractError:
                by_reason["(oläsbar)"] += 1
                continue
            if isinstance(d, Deadletter):
                by_reason[d.reason.value] += 1
                latest[d.reason.value] = [*latest[d.reason.value][-4:], d]
        return Deadletters(by_reason, dict(latest))

    async def lag(self) -> list[Lag]:
        kafka, group = self.state.kafka(), self.state.settings.worker.app_id
        admin = clients.admin(kafka)
        try:  # stopped even when starting fails (the broker may be down)
            await admin.start()
            committed = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        consumer = clients.consumer(kafka)
        try:  # stopped even when starting fails (the broker may be down)
            await consumer.start()
            client = consumer._client
            agency = self.state.topics.sources(self.state.settings.municipality_codes)
            for t in agency:
                client.add_topic(t)
            await client.force_metadata_update()
            tps = {tp for tp in committed if tp.partition >= 0}
            tps |= {TopicPartition(t, p) for t in agency for p in (client.cluster.partitions_for_topic(t) or ())}
            end = await consumer.end_offsets(list(tps)) if tps else {}
        finally:
            await consumer.stop()
        per_topic: dict[str, Lag] = {}
        for tp in sorted(tps):
            entry = per_topic.setdefault(tp.topic, Lag(tp.topic, 0, 0, 0))
            offset = committed.get(tp)
            entry.partitions += 1
            entry.end += end.get(tp, 0)
            entry.committed += offset.offset if offset is not None and offset.offset >= 0 else 0
        return sorted(per_topic.values(), key=lambda x: (-x.lag, x.topic))

    async def audit(self) -> VerifyResult:
        return verify(await read_trail(self.state.kafka(), self.state.topics.audit))

    async def reconciliation(self) -> Reconciliation:
        return await reconcile(self.state.kafka(), self.state.settings)


OPERATOR: web.AppKey[OperatorData] = web.AppKey("operator_data", OperatorData)


def _number(value: float) -> str:
    return f"{value:,.0f}".replace(",", "\u00a0")


def _unreadable(what: str, exc: Exception) -> Html:
    return render('<p class="error">{what} kunde inte läsas ({kind}).</p>', what=what, kind=type(exc).__name__)


def _throughput(data: OperatorData) -> Html:
    last = data.samples[-1] if data.samples else None
    if last is None:
        return render('<p class="error">Arbetarens mätvärden kunde inte hämtas från {url} ({err}).</p>',
                      url=data.metrics_url, err=data.scrape_error or "ingen mätning ännu")  # fmt: skip
    rate = data.rate()
    mean = last.mean_processing_s
    rows: list[list[object]] = [
        ["Händelser per sekund (senaste minuten)", "–" if rate is None else f"{rate:.1f}".replace(".", ",")],
        ["Händelser in totalt", _number(last.received)],
        ["Leveranser totalt", _number(sum(last.deliveries.values()))],
        ["Nekade leveranser", _number(last.refused)],
        ["Döda brev", _number(last.deadletters)],
        ["Dubbletter som togs bort", _number(last.duplicates)],
        ["Medeltid per meddelande", "–" if mean is None else f"{mean * 1000:.2f} ms".replace(".", ",")],
    ]
    rows += [[f"Leveranser till {labels.receiver(r)}", _number(n)] for r, n in sorted(last.deliveries.items())]
    stale = Html("") if data.scrape_error is None else render(
        '<p class="error">Senaste hämtningen misslyckades ({err}); siffrorna är från en tidigare mätning.</p>',
        err=data.scrape_error)  # fmt: skip
    return join([stale, table(f"Från arbetarens mätvärden ({data.metrics_url}), sedan arbetaren startade",
                              ["Mått", "Värde"], rows, css="throughput")])  # fmt: skip


def _deadletters(result: Deadletters | Exception) -> Html:
    if isinstance(result, Exception):
        return _unreadable("Döda brev", result)
    if not result.by_reason:
        return render("<p>Inga döda brev.</p>")
    counts = table("Döda brev per orsak", ["Orsak", "Kod", "Antal"],
                   [[labels.deadletter_reason(r), r, n] for r, n in result.by_reason.most_common()])  # fmt: skip
    latest = [
        [labels.deadletter_reason(d.reason.value), redact(d.message), f"{d.source_topic} {d.source_partition}@"
         f"{d.source_offset}", local_time(d.at)]
        for reason in sorted(result.latest) for d in reversed(result.latest[reason])
    ]  # fmt: skip
    return join([counts, table("Senaste döda brev per orsak (personnummer visas aldrig)",
                               ["Orsak", "Meddelande", "Källa (ämne partition@offset)", "Tid"], latest,
                               css="deadletters")])  # fmt: skip


def _lag(result: list[Lag] | Exception, group: str) -> Html:
    if isinstance(result, Exception):
        return _unreadable("Konsumentfördröjningen", result)
    rows = [[x.topic, x.partitions, _number(x.committed), _number(x.end), _number(x.lag)] for x in result]
    total = sum(x.lag for x in result)
    return join([render("<p>Gruppen <code>{g}</code> ligger totalt <strong>{n}</strong> meddelanden efter.</p>",
                        g=group, n=_number(total)),
                 table(f"Fördröjning per ämne för gruppen {group}", ["Ämne", "Partitioner", "Bekräftat",
                                                                    "Slut", "Efter"], rows, css="lag")])  # fmt: skip


def _audit(result: VerifyResult | Exception) -> Html:
    if isinstance(result, TrailError):
        return render('<p class="status-bad"><strong>Bruten:</strong> {why}</p>', why=str(result))
    if isinstance(result, Exception):
        return _unreadable("Revisionsloggen", result)
    if result.ok:
        return render('<p class="status-ok" id="audit-status"><strong>Intakt:</strong> {n} poster i {p} '
                      "partitioner, alla hashkedjor stämmer.</p>", n=_number(result.records), p=result.partitions)
    return render('<p class="status-bad" id="audit-status"><strong>Bruten</strong> vid {where} ({n} poster '
                  "lästa).</p>", where=str(result.first_break), n=_number(result.records))  # fmt: skip


def _reconciliation(result: Reconciliation | Exception) -> Html:
    if isinstance(result, Exception):
        return _unreadable("Avstämningen", result)
    css = "status-ok" if result.ok else "status-bad"
    return render('<p class="{css}">{n} källmeddelanden, {acc} redovisade, <strong>{lost} saknas</strong>; '
                  "{d} leveranser varav {dup} dubbletter.</p>", css=css, n=_number(result.source_messages),
                  acc=_number(result.accounted), lost=_number(result.lost), d=_number(result.deliveries),
                  dup=_number(result.duplicate_deliveries))  # fmt: skip


async def operator_page(request: web.Request) -> web.Response:
    scope = require_page(request)
    if not scope.may_operate():
        raise forbid(request, scope)
    data = request.app[OPERATOR]
    await data.scrape()  # the latest figures; the background samples give the rate
    dead, lag, audit, rec = await asyncio.gather(
        data.cached("deadletters", data.deadletters), data.cached("lag", data.lag),
        data.cached("audit", data.audit), data.cached("reconcile", data.reconciliation),
    )  # fmt: skip
    group = data.state.settings.worker.app_id
    if isinstance(dead, Deadletters):  # the dead letters' messages and positions are shown: a recorded read
        shown = sum(len(v) for v in dead.latest.values())
        read = data.state.read(scope, AccessChannel.web_operator, data.state.topics.deadletter)
        await data.state.record_view(read, shown)
    body = render(
        "<h1>Drift</h1>"
        "<p>Läget för hubben just nu. Det som läses från Kafka återanvänds i högst {ttl} s. "
        '<a href="/operator">Uppdatera</a></p>'
        "<h2>Genomströmning</h2>{throughput}"
        "<h2>Döda brev</h2>{dead}"
        "<h2>Konsumentfördröjning</h2>{lag}"
        "<h2>Revisionskedjan</h2>{audit}"
        "<h2>Avstämning</h2>{rec}",
        ttl=f"{data.state.settings.web.operator_cache_s:g}", throughput=_throughput(data), dead=_deadletters(dead),
        lag=_lag(lag, group), audit=_audit(audit), rec=_reconciliation(rec),
    )  # fmt: skip
    response = html_response(layout("Drift", body, scope, "/operator"))
    response.headers["Cache-Control"] = "no-store"
    return response
