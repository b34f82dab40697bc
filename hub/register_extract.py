"""The register extract (GDPR art. 15, "registerutdrag"): every decision about one person, and every read of it.

The audit trail holds no personnummer: each decision about a person carries the person's key (a keyed hash,
:meth:`hub.pseudonym.Pseudonymiser.person_key`). ``hub audit subject`` keys the number it is given (read from
stdin or a prompt, never from argv, never logged) and finds, in ``hub.audit``:

- every event about the person the hub received (its type, source unit, when), and per receiver what was
  decided: delivered (to which receiver and municipality, on which legal basis, which fields), refused (why),
  counted into aggregates only, recorded (a consent);
- every recorded human read of those deliveries (``accessed`` records naming the event in the same receiver's
  inbox): who, through which tool, when, and whether identities were shown unmasked;
- the earlier register extracts made for the person (an extract is itself an audited read).

:func:`build` is pure (no Kafka); :func:`as_json`, :func:`as_table` and :func:`as_html` render it. Records
written before audit_record v4 carry no person key and cannot be found; the extract says so.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.contract.outputs import AccessChannel, AuditRecord, Decision

STOCKHOLM = ZoneInfo("Europe/Stockholm")


@dataclass
class Decided:
    decision: str
    receiver: str
    municipality_code: str | None
    legal_basis: str
    fields_disclosed: list[str]
    reason: str | None
    at: datetime


@dataclass
class ReadOf:
    accessor: str
    channel: str
    target: str
    at: datetime
    revealed: bool


@dataclass
class EventEntry:
    event_id: str
    event_type: str | None
    source_unit: str | None
    received_at: datetime
    decisions: list[Decided] = field(default_factory=list)
    reads: list[ReadOf] = field(default_factory=list)


@dataclass
class Extract:
    person_key: str
    generated_at: datetime
    events: list[EventEntry]
    extracts: list[ReadOf]
    """Earlier register extracts made for this person."""
    records_searched: int
    records_without_key: int
    """Decisions in the trail written before v4 (no person key): they could be about anyone."""

    @property
    def counts(self) -> dict[str, int]:
        out = {d.value: 0 for d in Decision if d is not Decision.accessed}
        for e in self.events:
            for d in e.decisions:
                out[d.decision] = out.get(d.decision, 0) + 1
        return {"events": len(self.events), **out, "reads": sum(len(e.reads) for e in self.events),
                "earlier_extracts": len(self.extracts)}  # fmt: skip


def build(records: Iterable[AuditRecord], person_key: str, now: datetime | None = None) -> Extract:
    """The extract for ``person_key`` from the trail's records (any order)."""
    events: dict[str, EventEntry] = {}
    reads: list[AuditRecord] = []
    extracts: list[ReadOf] = []
    searched = without_key = 0
    for rec in records:
        searched += 1
        if rec.decision is Decision.accessed:
            if rec.channel == AccessChannel.cli_audit_subject.value and rec.subject == person_key:
                extracts.append(_read(rec))
            elif rec.event_ids:
                reads.append(rec)
            continue
        if rec.subject is None:
            without_key += rec.event_type is None  # v4 records name their event type; older ones do not
            continue
        if rec.subject != person_key:
            continue
        entry = events.get(rec.event_id)
        if entry is None:
            entry = events[rec.event_id] = EventEntry(rec.event_id, rec.event_type, rec.source_unit, rec.at)
        entry.received_at = min(entry.received_at, rec.at)
        entry.decisions.append(Decided(rec.decision.value, rec.receiver, rec.municipality_code, rec.legal_basis,
                                       list(rec.fields_disclosed), rec.reason, rec.at))  # fmt: skip
    delivered = {(e.event_id, d.receiver, d.municipality_code): e for e in events.values() for d in e.decisions
                 if d.decision == Decision.delivered.value}  # fmt: skip
    for rec in reads:
        for event_id in rec.event_ids or []:
            hit = delivered.get((event_id, rec.receiver, rec.municipality_code))
            if hit is not None:
                hit.reads.append(_read(rec))
    ordered = sorted(events.values(), key=lambda e: (e.received_at, e.event_id))
    for e in ordered:
        e.decisions.sort(key=lambda d: (d.at, d.receiver))
        e.reads.sort(key=lambda r: r.at)
    return Extract(person_key, now or datetime.now(UTC), ordered, sorted(extracts, key=lambda r: r.at), searched,
                   without_key)  # fmt: skip


def _read(rec: AuditRecord) -> ReadOf:
    return ReadOf(rec.accessor or "?", rec.channel or "?", rec.target or "?", rec.at, bool(rec.revealed))


# -- rendering ------------------------------------------------------------------------------------------


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def as_json(x: Extract) -> dict[str, Any]:
    def read(r: ReadOf) -> dict[str, Any]:
        return {"accessor": r.accessor, "channel": r.channel, "target": r.target, "at": _iso(r.at),
                "revealed": r.revealed}  # fmt: skip

    return {
        "person_key": x.person_key, "generated_at": _iso(x.generated_at), "counts": x.counts,
        "events": [{
            "event_id": e.event_id, "event_type": e.event_type, "source_unit": e.source_unit,
            "received_at": _iso(e.received_at),
            "decisions": [{"decision": d.decision, "receiver": d.receiver, "municipality_code": d.municipality_code,
                           "legal_basis": d.legal_basis, "fields_disclosed": d.fields_disclosed, "reason": d.reason,
                           "at": _iso(d.at)} for d in e.decisions],
            "reads": [read(r) for r in e.reads],
        } for e in x.events],
        "earlier_extracts": [read(r) for r in x.extracts],
        "records_searched": x.records_searched, "records_without_person_key": x.records_without_key,
    }  # fmt: skip


def _local(at: datetime) -> str:
    return at.astimezone(STOCKHOLM).strftime("%Y-%m-%d %H:%M")


def as_table(x: Extract) -> str:
    """The extract as plain text, one block per event."""
    c = x.counts
    lines = [f"Register extract, {_local(x.generated_at)} (Europe/Stockholm): {c['events']} events, "
             f"{c['delivered']} delivered, {c['refused']} refused, {c['aggregated']} counted only, "
             f"{c['recorded']} consents recorded, {c['reads']} recorded reads, {c['earlier_extracts']} earlier "
             f"extracts ({x.records_searched} audit records searched)"]  # fmt: skip
    for e in x.events:
        lines.append("")
        lines.append(f"{_local(e.received_at)}  received {e.event_type or '?'} from {e.source_unit or '?'} "
                     f"(event {e.event_id})")  # fmt: skip
        for d in e.decisions:
            where = f"{d.receiver}.{d.municipality_code}" if d.municipality_code else d.receiver
            what = {"delivered": f"fields {', '.join(d.fields_disclosed) or '-'}", "refused": f"why: {d.reason}",
                    "aggregated": "counted into aggregates only, no person recognisable",
                    "recorded": "consent state updated"}.get(d.decision, "")  # fmt: skip
            lines.append(f"  {d.decision:<10} {where:<22} [{d.legal_basis}] {what}")
        for r in e.reads:
            lines.append(f"  read       {_local(r.at)} by {r.accessor} via {r.channel} ({r.target})"
                         f"{', identities shown' if r.revealed else ''}")  # fmt: skip
    for r in x.extracts:
        lines.append(f"earlier extract {_local(r.at)} by {r.accessor}")
    if x.records_without_key:
        lines.append(f"note: {x.records_without_key} audit records were written before records named their "
                     "person (audit_record v4) and cannot be searched")  # fmt: skip
    return "\n".join(lines)


DECISIONS_SV = {"delivered": "Lämnades ut", "refused": "Lämnades inte ut", "aggregated": "Räknades i statistik",
                "recorded": "Samtycke registrerat"}  # fmt: skip
CHANNELS_SV = {"web.inbox": "inkorgen (webb)", "web.stream": "inkorgens liveflöde (webb)",
               "cli.tail": "hub tail (terminal)"}  # fmt: skip


def _receiver(d: Decided, name: Callable[[str], str]) -> str:
    return "Samtyckesregistret" if d.decision == Decision.recorded.value else name(d.receiver)


def _basis(d: Decided, label: Callable[[str], str]) -> str:
    if d.decision == Decision.recorded.value:
        return f"Samtycke för {d.legal_basis}"  # a consent record names the scope it was given for
    return f"{label(d.legal_basis)} [{d.legal_basis}]"


def as_html(x: Extract) -> str:
    """A self-contained Swedish HTML report a registrar can hand out (print to PDF from the browser)."""
    from hub.web import labels  # Swedish names of receivers, municipalities, event types, fields

    e_ = html.escape
    c = x.counts
    rows: list[str] = []
    for e in x.events:
        decided = "".join(
            f"<tr><td>{e_(DECISIONS_SV.get(d.decision, d.decision))}</td><td>{e_(_receiver(d, labels.receiver))}</td>"
            f"<td>{e_(labels.municipality(d.municipality_code) if d.municipality_code else '–')}</td>"
            f"<td>{e_(_basis(d, labels.basis))}</td>"
            f"<td>{e_(', '.join(labels.field(f) for f in d.fields_disclosed) or '–')}</td>"
            f"<td>{e_(d.reason or '')}</td><td>{e_(_local(d.at))}</td></tr>"
            for d in e.decisions
        )  # fmt: skip
        read = "".join(
            f"<li>{e_(_local(r.at))}: {e_(r.accessor)} via {e_(CHANNELS_SV.get(r.channel, r.channel))}"
            f"{' (personnummer visades)' if r.revealed else ''}</li>" for r in e.reads
        )  # fmt: skip
        rows.append(
            f'<section class="event"><h2>{e_(labels.event_type(e.event_type or "?"))}</h2>'
            f"<p>Mottogs {e_(_local(e.received_at))} från {e_(e.source_unit or '?')} · händelse-id "
            f"<code>{e_(e.event_id)}</code></p>"
            "<table><thead><tr><th>Beslut</th><th>Mottagare</th><th>Kommun</th><th>Rättslig grund</th>"
            f"<th>Uppgifter</th><th>Skäl</th><th>Tid</th></tr></thead><tbody>{decided}</tbody></table>"
            + (f"<h3>Vem har läst uppgifterna</h3><ul>{read}</ul>" if read else "<p>Ingen registrerad läsning.</p>")
            + "</section>"
        )
    earlier = "".join(f"<li>{e_(_local(r.at))}: {e_(r.accessor)}</li>" for r in x.extracts)
    return (
        '<!doctype html><html lang="sv"><head><meta charset="utf-8"><title>Registerutdrag – Samverkan Hub</title>'
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#111}table{border-collapse:"
        "collapse;width:100%}th,td{border:1px solid #999;padding:.3em;text-align:left;vertical-align:top}"
        "section{margin:1.5em 0}code{font-size:.9em}</style></head><body>"
        "<h1>Registerutdrag</h1>"
        f"<p>Upprättat {e_(_local(x.generated_at))} ur Samverkan Hubs revisionslogg. Det visar varje händelse om "
        "dig som hubben tagit emot, vart den lämnades ut och med vilken rättslig grund, vad som inte lämnades ut "
        "och varför, och vem som har läst det som lämnades ut.</p>"
        f'<p id="summary">{c["events"]} händelser · {c["delivered"]} utlämnanden · {c["refused"]} ej utlämnade · '
        f"{c['reads']} registrerade läsningar</p>"
        + ("".join(rows) or "<p>Inga händelser om dig finns i revisionsloggen.</p>")
        + (f"<h2>Tidigare registerutdrag</h2><ul>{earlier}</ul>" if earlier else "")
        + "</body></html>"
    )
