"""One message's walk through the hub, top to bottom, with no Kafka in it.

intake (decode, source check) → deduplicate → consent state → route → gate → minimise/pseudonymise
→ outputs (deliveries, audit records, dead letters) and lägesbild increments.

The source of an event is the source unit whose topic it was read from — what the broker authenticated
(only ``kommun-1381``'s principals may write ``agency.kommun.1381.events``) — never what the record claims:
an event whose ``source_agency`` or municipality does not match its topic's unit is a dead letter.
Deduplication is per source unit, and consent is bound to the municipality that recorded it.

The worker (``hub.app``) feeds messages in and produces the returned outputs; tests and benchmarks call
:meth:`Pipeline.process` directly. State lives in three mappings that the worker backs with faust tables
(changelogged to Kafka): ``seen`` (event ids), ``consents`` (person × scope) and the audit chain heads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from hub import metrics
from hub.audit import AuditChain, access_fields, millis
from hub.contract.errors import ContractError
from hub.contract.fast import EventView, FastConsentGiven, FastConsentWithdrawn, FastEvent, FastValidator
from hub.contract.fields import allowed_municipality_codes
from hub.contract.outputs import AccessRecord, AuditCheckpoint, AuditRecord, Deadletter, Decision, Delivery, ReasonCode
from hub.contract.serde import Serde
from hub.flows.gate import ConsentTable, decide, record_consent
from hub.flows.minimise import delivery_datum, disclosed_fields
from hub.flows.routing import Plan, Router, event_category
from hub.identity import SourceUnit
from hub.logsafety import redact
from hub.pseudonym import Pseudonymiser
from hub.rules.receivers import Basis
from hub.topics import Topics


@dataclass(frozen=True, slots=True)
class Message:
    """A message as read from an agency topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    """None for a null value (a tombstone): never an event, always a dead letter."""
    credential: str | None = None
    """The gateway credential id that sent it (the ``hub-credential`` header), if any."""


@dataclass(slots=True)
class Output:
    """A message to produce."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass
class Result:
    outputs: list[Output] = field(default_factory=list)
    increments: list[dict[str, Any]] = field(default_factory=list)
    """The lägesbild count increments of the event, one per receiver × municipality on the aggregated basis:
    the worker coalesces a batch's (:func:`hub.flows.lagesbild.coalesce`) and writes them to ``hub.lagesbild``."""
    event_id: str | None = None
    outcome: str = "processed"
    """processed | duplicate | deadletter"""


def source_refusal(topic: str, unit: SourceUnit | None, event: EventView) -> str | None:
    """Why ``event`` may not come from ``topic`` (of source unit ``unit``), or None.

    A unit sends only its own agency's event types, as its own agency, and a per-municipality unit only about
    its own municipality (a consent included)."""
    env = event.envelope
    if unit is None:
        return f"{topic} is not an agency topic"
    if env.source_agency.value != unit.agency or not env.event_type.startswith(unit.agency + "."):
        return f"{env.source_agency.value} event {env.event_type} may not be sent on {topic}"
    if unit.municipality is not None and env.municipality_code != unit.municipality:
        return f"an event about municipality {env.municipality_code} may not be sent by {unit.name} ({topic})"
    return None


class Pipeline:
    """Processes agency messages into outputs, applying the rules, the gate and the trails."""

    def __init__(
        self,
        router: Router,
        serde: Serde,
        pseudonyms: Pseudonymiser,
        *,
        seen: MutableMapping[str, Any],
        consents: ConsentTable,
        chain: AuditChain,
        dedup_window_s: float = 7 * 24 * 3600,
        topics: Topics | None = None,
    ) -> None:
        self.topics = topics or Topics()
        self.router = router
        self.serde = serde
        self.pseudonyms = pseudonyms
        self.seen = seen
        self.consents = consents
        self.chain = chain
        self.dedup_window_ms = int(dedup_window_s * 1000)
        self._units: dict[str, SourceUnit | None] = {}
        self.fast = FastValidator()
        self.tally = metrics.Tally()
        self._batched = False
        self._served: frozenset[str] | None = None
        """The served municipality codes, asked once per batch (per message outside one)."""
        self._periods: dict[date, tuple[str, str]] = {}
        """ISO week and day of an occurrence date, for the lägesbild increments."""

    def _unit_of(self, topic: str) -> SourceUnit | None:
        if topic not in self._units:
            self._units[topic] = self.topics.unit_of(topic)
        return self._units[topic]

    # -- the walk --------------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Inside the block, :meth:`process` gathers its metrics and /metrics gets them when the block ends
        (the worker's batches); outside, after each message."""
        self._batched = True
        self._served = allowed_municipality_codes()
        try:
            yield
        finally:
            self._batched = False
            self._served = None
            self.tally.flush()

    def process(self, msg: Message, now: datetime | None = None) -> Result:
        result = self._process(msg, now)
        if not self._batched:
            self.tally.flush()
        return result

    def _process(self, msg: Message, now: datetime | None) -> Result:
        started = time.perf_counter()
        now = now or datetime.now(UTC)
        at = millis(now)  # the records' time, truncated to the contract's milliseconds once per message
        tally = self.tally
        tally.inc(metrics.RECEIVED, msg.topic)
        try:
            event = self._intake(msg)
        except ContractError as err:
            return self._deadletter(msg, err.reason, err.message, None, now)
        event_id = str(event.envelope.event_id)
        unit = self._unit_of(msg.topic)
        refusal = source_refusal(msg.topic, unit, event)
        if refusal or unit is None:
            return self._deadletter(msg, "not_allowed_for_agency", refusal or "not an agency topic", event_id, now)
        source = unit.name
        seen_key = f"{source}|{event_id}"  # an id first used by one source unit never suppresses another's
        if self._is_resent(seen_key, msg, now):
            tally.inc(metrics.DUPLICATES)
            return Result(event_id=event_id, outcome="duplicate")

        result = Result(event_id=event_id)
        person_key = self._person_key(event)
        if isinstance(event, FastConsentGiven | FastConsentWithdrawn):
            assert person_key is not None  # noqa: S101 - the contract requires a subject on consent events
            # Bound to the municipality that recorded it (checked against the topic above).
            record_consent(self.consents, person_key, event, event.envelope.municipality_code)
            tally.inc(metrics.CONSENT_RECORDED)
            self._audit(result, msg, event, "consent", Decision.recorded, str(event.payload.scope), None, [], at,
                        person_key, event.envelope.municipality_code)  # fmt: skip
        else:
            plans = self.router.route(event)
            if not plans:
                return self._deadletter(
                    msg, "no_matching_rule",
                    f"no routing rule matches {event.envelope.event_type} "
                    f"(municipality {event.envelope.municipality_code})", event_id, now,
                )  # fmt: skip
            served = self._served or allowed_municipality_codes()
            for plan in plans:
                self._apply(result, msg, event, plan, person_key, now, at, served)
        self._mark_seen(seen_key, msg, now)
        tally.observe(metrics.END_TO_END, max(0.0, (now - event.envelope.recorded_at).total_seconds()))
        tally.observe(metrics.LATENCY, time.perf_counter() - started)
        return result

    # -- stages ----------------------------------------------------------------------------------------

    def _intake(self, msg: Message) -> FastEvent:
        if msg.value is None:
            raise ContractError("undecodable", "a null value (a tombstone) is not an event")
        # Validated without a pydantic model on the hot path, to the same decisions and values
        # (tests/contract/test_fast_equivalence.py): the models stay the contract at the edges.
        return self.fast.decode(msg.value, self.serde)

    def _is_resent(self, seen_key: str, msg: Message, now: datetime) -> bool:
        """A re-sent event (same id at another offset, within the window) is dropped.

        The same message read again (same topic/partition/offset) is processed again: its mark may be from a
        transaction the broker aborted after the client was told it committed (the local dedup store then
        holds it; seen after a broker restart, where dropping such messages lost 442 of them), and processing it
        again loses nothing. A duplicate that could cause is what the transaction loop's other safeguards keep
        from happening (docs/reliability.md, defect 21).
        """
        first = self.seen.get(seen_key)
        if first is None:
            return False
        at, where = first
        if int(now.timestamp() * 1000) - at > self.dedup_window_ms:
            return False
        return bool(where != [msg.topic, msg.partition, msg.offset])

    def _mark_seen(self, seen_key: str, msg: Message, now: datetime) -> None:
        if seen_key not in self.seen:
            self.seen[seen_key] = (int(now.timestamp() * 1000), [msg.topic, msg.partition, msg.offset])

    def _person_key(self, event: FastEvent) -> str | None:
        subject = event.envelope.subject
        return None if subject is None else self.pseudonyms.person_key(subject.personnummer)

    def _apply(
        self, result: Result, msg: Message, event: FastEvent, plan: Plan, person_key: str | None, now: datetime,
        at: datetime, served: frozenset[str],
    ) -> None:  # fmt: skip
        if plan.municipality_code not in served:
            # e.g. a release to a home municipality outside the county: there is no receiver here to have it.
            reason = f"municipality {plan.municipality_code} is not served by this hub"
            self.tally.inc(metrics.REFUSED, plan.receiver, reason)
            self._audit(result, msg, event, plan.receiver, Decision.refused, plan.spec.basis, reason, [], at,
                        person_key, plan.municipality_code)  # fmt: skip
            return
        verdict = decide(plan, event, self.consents, person_key, now)
        if not verdict.allowed:
            self.tally.inc(metrics.REFUSED, plan.receiver, verdict.reason or "")
            self._audit(result, msg, event, plan.receiver, Decision.refused, plan.spec.basis, verdict.reason, [], at,
                        person_key, plan.municipality_code)  # fmt: skip
            return
        if plan.spec.basis_kind is Basis.AGGREGATED:
            result.increments.append(self._increment(plan, event))
            self.tally.inc(metrics.AGGREGATED, plan.receiver)
            self._audit(result, msg, event, plan.receiver, Decision.aggregated, plan.spec.basis, None,
                        sorted(plan.spec.fields), at, person_key, plan.municipality_code)  # fmt: skip
            return
        delivery = delivery_datum(plan, event, self.pseudonyms, at, result.event_id)
        key = delivery["person_ref"] or plan.municipality_code
        value = self.serde.encode_datum(Delivery.SCHEMA_NAME, delivery)
        result.outputs.append(Output(self.topics.deliver(plan.receiver, plan.municipality_code), key.encode(), value))
        self.tally.inc(metrics.DELIVERED, plan.receiver)
        self._audit(result, msg, event, plan.receiver, Decision.delivered, plan.spec.basis, None,
                    disclosed_fields(plan, delivery), at, person_key, plan.municipality_code)  # fmt: skip

    def _increment(self, plan: Plan, event: FastEvent) -> dict[str, Any]:
        """A count increment for the lägesbild stage: what it counts, no personal data."""
        env = event.envelope
        day = env.occurred_at.date()
        periods = self._periods.get(day)
        if periods is None:
            if len(self._periods) >= 4096:
                self._periods.clear()
            iso = day.isocalendar()
            periods = self._periods[day] = (f"{iso.year}-W{iso.week:02d}", day.isoformat())
        return {
            "receiver": plan.receiver, "municipality_code": plan.municipality_code, "area": env.area,
            "category": event_category(event) or env.event_type.split(".", 1)[1],
            "week": periods[0], "day": periods[1],
        }  # fmt: skip

    def _audit(
        self, result: Result, msg: Message, event: FastEvent, receiver: str, decision: Decision, basis: str,
        reason: str | None, fields: list[str], at: datetime, person_key: str | None, municipality_code: str,
    ) -> None:  # fmt: skip
        unit = self._unit_of(msg.topic)
        datum = self.chain.append_datum(
            msg.partition, event_id=result.event_id or str(event.envelope.event_id), receiver=receiver,
            legal_basis=basis, decision=decision, reason=reason, fields_disclosed=fields, at=at,
            source_unit=unit.name if unit else None, credential=msg.credential, subject=person_key,
            event_type=event.envelope.event_type, municipality_code=municipality_code,
        )  # fmt: skip
        self._chained(result, msg.partition, datum, at)

    def _chained(self, result: Result, partition: int, datum: dict[str, Any], at: datetime) -> None:
        result.outputs.append(Output(self.topics.audit, None, self.serde.encode_datum(AuditRecord.SCHEMA_NAME, datum),
                                     partition))  # fmt: skip
        if self.chain.due(partition):  # sealed right after the record that makes it due
            result.outputs.append(self.checkpoint(partition, at))

    # -- human reads -----------------------------------------------------------------------------------

    def record_access(self, msg: Message, now: datetime | None = None) -> Result:
        """A message of ``hub.access`` (a read recorded by the web app, ``hub tail`` or ``hub audit subject``)
        as an ``accessed`` audit record in the chain of its partition; anything else there is a dead letter."""
        now = now or datetime.now(UTC)
        try:
            if msg.value is None:
                raise ContractError("undecodable", "a null value (a tombstone) is not an access record")
            record = self.serde.decode(msg.value)
        except ContractError as err:
            return self._deadletter(msg, err.reason, err.message, None, now)
        if not isinstance(record, AccessRecord):
            return self._deadletter(msg, "unknown_event_type", f"{record.EVENT_TYPE} on {msg.topic}, which carries "
                                    "hub.access_record only", None, now)  # fmt: skip
        self.tally.inc(metrics.ACCESSES, record.channel)
        at = millis(now)  # the trail's own time (the record's ``at`` is the reading tool's)
        result = Result(event_id=record.access_id)
        datum = self.chain.append_datum(
            msg.partition, event_id=record.access_id, receiver=record.receiver or "hub", legal_basis="",
            decision=Decision.accessed, reason=None, fields_disclosed=[], at=at, subject=record.subject,
            municipality_code=record.municipality_code, access=access_fields(record),
        )  # fmt: skip
        self._chained(result, msg.partition, datum, at)
        if not self._batched:
            self.tally.flush()
        return result

    def checkpoint(self, partition: int, at: datetime) -> Output:
        """A signed checkpoint of the audit chain of ``partition``, to write to the audit topic."""
        datum = self.chain.checkpoint(partition, at)
        return Output(self.topics.audit, None, self.serde.encode_datum(AuditCheckpoint.SCHEMA_NAME, datum), partition)

    def _deadletter(self, msg: Message, reason: str, message: str, event_id: str | None, now: datetime) -> Result:
        self.tally.inc(metrics.DEADLETTERED, reason)
        record = Deadletter(
            reason=ReasonCode(reason), message=redact(message), source_topic=msg.topic,
            source_partition=msg.partition, source_offset=msg.offset, original=msg.value or b"",
            event_id=event_id, at=now,
        )  # fmt: skip
        out = Output(self.topics.deadletter, msg.key, self.serde.encode(record), msg.partition)
        return Result(outputs=[out], event_id=event_id, outcome="deadletter")

