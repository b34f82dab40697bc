"""Hypothesis strategies for hostile input at the hub's three doors, each case labelled with what must happen.

* :func:`agency_messages` — raw message values on ``agency.<agency>.events`` (the worker's intake).
* :func:`ingest_requests` — HTTP requests to ``POST /v1/events`` (headers and bodies).
* :func:`drop_files` — files in a file-drop folder (names and contents).

A label says which outcomes are acceptable: ``good`` input must get through (delivered, published),
``bad`` input must be refused (with the given reasons or statuses), ``any`` input may go either way but
must still get a clear answer. Event ids of good input are filled in by the test (:func:`with_event_id`)
so every case is distinct, whatever Hypothesis repeats.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any, Final, Literal

from fastavro import schemaless_writer
from hypothesis import strategies as st

from connectors.filedrop.formats import KINDS, LIST_SEPARATOR, FileNameError, KindFormat, validate_file_name
from hub.contract.base import ContractRecord, all_models
from hub.contract.envelope import Agency, Event
from hub.contract.errors import CONTRACT_REASONS, ContractError
from hub.contract.serde import MAGIC, Serde
from hub.logsafety import redact
from hub.topics import AGENCIES
from tests.contract.strategies import models, personnummer_12


class Redacted:
    """Cases print with every personnummer-shaped number redacted: a failing test's report is a log too."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return redact(f"{type(self).__name__}({fields})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how Hypothesis prints a failing case
        printer.text(repr(self))


SERDE: Final = Serde()
EVENT_MODELS: Final[dict[str, type[Event]]] = {
    t: m for t, m in sorted(all_models().items()) if isinstance(m, type) and issubclass(m, Event)
}
OUTPUT_MODELS: Final[dict[str, type[ContractRecord]]] = {
    t: m for t, m in sorted(all_models().items()) if t.startswith("hub.")
}
FINGERPRINTS: Final = [sv.fingerprint for sv in SERDE.registry.all_versions()]
Label = Literal["good", "bad", "any"]
FUZZ_NAMESPACE: Final = uuid.UUID("0b7c3c1e-2f4d-4b8a-9d6e-5a1f7e3c9b20")


def agency_of(event_type: str) -> str:
    return event_type.partition(".")[0]


def types_of(agency: str) -> list[str]:
    return [t for t in EVENT_MODELS if agency_of(t) == agency]


def wrong_check_digit(pnr: str) -> str:
    return f"{pnr[:-1]}{(int(pnr[-1]) + 1) % 10}"


def valid_events(event_types: list[str] | None = None) -> st.SearchStrategy[Event]:
    """Valid events of the given types (default: every agency event type), sent by their own agency."""
    return _valid_events(tuple(event_types or EVENT_MODELS))


@cache
def _valid_events(names: tuple[str, ...]) -> st.SearchStrategy[Event]:
    # Built once: Hypothesis validates every new strategy object, which costs more than drawing from it.
    return st.one_of([_model_strategy(t) for t in names]).map(_from_own_agency)


@cache
def _model_strategy(event_type: str) -> st.SearchStrategy[Event]:
    return models(EVENT_MODELS[event_type])  # type: ignore[return-value]


def _from_own_agency(event: Event) -> Event:
    agency = Agency(agency_of(event.envelope.event_type))
    return event.model_copy(update={"envelope": event.envelope.model_copy(update={"source_agency": agency})})


def with_event_id(event: Event, event_id: uuid.UUID) -> Event:
    """``event`` with another envelope.event_id (no validation needed: only the id changes)."""
    return event.model_copy(update={"envelope": event.envelope.model_copy(update={"event_id": event_id})})


def case_id(*parts: object) -> uuid.UUID:
    """A deterministic event id for a case (the test numbers its cases)."""
    return uuid.uuid5(FUZZ_NAMESPACE, ":".join(map(str, parts)))


# -- (b) agency topics: raw message values ---------------------------------------------------------------

ALL_DEADLETTER_REASONS: Final = frozenset(CONTRACT_REASONS | {"not_allowed_for_agency", "no_matching_rule"})


@dataclass(frozen=True, repr=False)
class AgencyMessage(Redacted):
    """A message value for an agency topic and what must become of it.

    ``event`` is set for valid events (the test gives them fresh ids before encoding); ``reasons`` are the
    dead-letter reasons a bad message may get; ``good`` messages must be processed (or dead-lettered
    ``no_matching_rule`` when no rule wants them).
    """

    family: str
    agency: str
    label: Label
    value: bytes | None = b""
    """The value when there is no ``event``; None is a null value (a tombstone)."""
    event: Event | None = None
    encode_version: int | None = None
    reasons: frozenset[str] = ALL_DEADLETTER_REASONS
    truncate_at: int | None = None
    append: bytes = b""
    flips: tuple[tuple[int, int], ...] = ()
    """Changes to the encoded event's bytes (applied after the fresh event id is in)."""

    def materialise(self, event_id: uuid.UUID) -> bytes | None:
        """The bytes to publish (an event is encoded with ``event_id``, then changed as the case says)."""
        if self.event is None:
            return self.value
        data = bytearray(SERDE.encode(with_event_id(self.event, event_id), self.encode_version))
        for at, mask in self.flips:
            data[at % len(data)] ^= mask
        if self.truncate_at is not None:
            data = data[: min(self.truncate_at, len(data) - 1)]
        return bytes(data) + self.append


def _raw_avro(name: str, fingerprint: bytes, datum: dict[str, Any]) -> bytes:
    sv = SERDE.registry.by_fingerprint(fingerprint)
    assert sv is not None
    out = io.BytesIO()
    out.write(MAGIC)
    out.write(fingerprint)
    schemaless_writer(out, sv.parsed, datum)
    return out.getvalue()


def _contract_breaks(event: Event) -> list[tuple[str, Any]]:
    """Field changes that Avro can carry but the contract refuses, for this event."""
    env = event.envelope
    other_type = next(t for t in EVENT_MODELS if t != env.event_type)
    breaks: list[tuple[str, Any]] = [
        ("event_type", other_type),
        ("municipality_code", "9999"),
        ("source_unit", ""),
        ("schema_version", 0),
    ]
    if env.subject is not None:
        breaks += [
            ("personnummer", wrong_check_digit(env.subject.personnummer)),
            ("birth_year", int(env.subject.personnummer[:4]) + 1),
            ("data_class", "public"),
        ]
    elif type(event).SUBJECT_RULE == "forbidden":
        breaks.append(("subject", {"personnummer": personnummer_12(date(2009, 4, 1), 17), "birth_year": None}))
    return breaks


@st.composite
def _contract_invalid(draw: st.DrawFn) -> AgencyMessage:
    event = draw(valid_events())
    what, value = draw(st.sampled_from(_contract_breaks(event)))
    datum = event.to_avro()
    env = datum["envelope"]
    env["event_id"] = str(env["event_id"])
    if what == "personnummer":
        env["subject"]["personnummer"] = value
    elif what == "birth_year":
        env["subject"]["birth_year"] = value
    else:
        env[what] = value
    sv = SERDE.writer_for(event)
    agency = agency_of(event.envelope.event_type)
    return AgencyMessage(f"contract:{what}", agency, "bad", _raw_avro(sv.name, sv.fingerprint, datum),
                         reasons=frozenset({"invalid_payload"}))  # fmt: skip


@st.composite
def _mangled(draw: st.DrawFn) -> AgencyMessage:
    """A valid encoding, then truncated, extended or with bytes flipped."""
    event = draw(valid_events())
    size = len(SERDE.encode(event))
    agency = agency_of(event.envelope.event_type)
    how = draw(st.sampled_from(["truncate", "append", "flip"]))
    if how == "truncate":
        return AgencyMessage("mangled:truncate", agency, "bad", event=event, truncate_at=draw(st.integers(0, size - 1)),
                             reasons=frozenset(CONTRACT_REASONS))  # fmt: skip
    if how == "append":
        tail = draw(st.binary(min_size=1, max_size=16))
        return AgencyMessage("mangled:append", agency, "bad", event=event, append=tail,
                             reasons=frozenset({"undecodable"}))
    flips = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)), min_size=1, max_size=4))
    return AgencyMessage("mangled:flip", agency, "any", event=event, flips=tuple(flips))


@st.composite
def _valid(draw: st.DrawFn) -> AgencyMessage:
    event = draw(valid_events())
    agency = agency_of(event.envelope.event_type)
    version = None
    if event.envelope.event_type == "kommun.youth_activity" and draw(st.booleans()):
        try:  # an older writer version, when the event fits it
            SERDE.encode(event, 1)
            version = 1
        except ContractError:
            version = None
    return AgencyMessage("valid", agency, "good", event=event, encode_version=version)


@st.composite
def _wrong_topic(draw: st.DrawFn) -> AgencyMessage:
    """A valid event on another agency's topic, or claiming another agency on its own topic."""
    event = draw(valid_events())
    own = agency_of(event.envelope.event_type)
    if draw(st.booleans()):
        topic_agency = draw(st.sampled_from([a for a in AGENCIES if a != own]))
        return AgencyMessage("wrong_topic", topic_agency, "bad", event=event,
                             reasons=frozenset({"not_allowed_for_agency"}))  # fmt: skip
    claimed = draw(st.sampled_from([a for a in ("polisen", "kriminalvarden", "kommun", "region", "hub") if a != own]))
    envelope = event.envelope.model_copy(update={"source_agency": Agency(claimed)})
    spoofed = event.model_copy(update={"envelope": envelope})
    return AgencyMessage("spoofed_source", own, "bad", event=spoofed, reasons=frozenset({"not_allowed_for_agency"}))


UNSERVED_CODES: Final = ("0180", "1280", "1480", "2480")
"""Valid municipality codes (Stockholm, Malmö, Göteborg, Umeå) outside the county this hub serves."""


@st.composite
def _unserved(draw: st.DrawFn) -> AgencyMessage:
    """A valid event naming a real municipality the hub does not serve: as the event's own municipality (a
    contract refusal: a dead letter), or as a release's home municipality (a planned delivery with no receiver
    here: refused, audited). Both once crashed an agent and left the message unaccounted for."""
    code = draw(st.sampled_from(UNSERVED_CODES))
    if draw(st.booleans()):
        event = draw(valid_events(["kriminalvarden.release_scheduled"]))
        payload = event.payload.model_copy(update={"home_municipality_code": code})  # type: ignore[attr-defined]
        release = event.model_copy(update={"payload": payload})
        return AgencyMessage("unserved:home", "kriminalvarden", "good", event=release)
    event = draw(valid_events())
    envelope = event.envelope.model_copy(update={"municipality_code": code})
    return AgencyMessage("unserved:envelope", agency_of(event.envelope.event_type), "bad",
                         event=event.model_copy(update={"envelope": envelope}),
                         reasons=frozenset(CONTRACT_REASONS | {"not_allowed_for_agency"}))  # fmt: skip


_OUTPUT_RECORDS: Final = st.one_of([models(m) for m in OUTPUT_MODELS.values()])


@st.composite
def _hub_record(draw: st.DrawFn) -> AgencyMessage:
    """One of the hub's own records (a delivery, an audit record, ...) put on an agency topic."""
    record = draw(_OUTPUT_RECORDS)
    return AgencyMessage("hub_record", draw(st.sampled_from(AGENCIES)), "bad", SERDE.encode(record),
                         reasons=frozenset({"unknown_event_type"}))  # fmt: skip


def agency_messages() -> st.SearchStrategy[AgencyMessage]:
    """Every kind of message value an agency topic may carry, good and bad."""
    agencies = st.sampled_from(AGENCIES)
    random_bytes = st.builds(lambda a, v: AgencyMessage("random", a, "bad", v), agencies, st.binary(max_size=300))
    unknown_fp = st.builds(
        lambda a, fp, body: AgencyMessage("unknown_fingerprint", a, "bad", MAGIC + fp + body,
                                          reasons=frozenset({"unknown_fingerprint", "truncated"})),
        agencies, st.binary(min_size=0, max_size=8).filter(lambda fp: fp not in FINGERPRINTS), st.binary(max_size=200),
    )  # fmt: skip
    known_fp_garbage = st.builds(
        lambda a, fp, body: AgencyMessage("garbage_body", a, "bad", MAGIC + fp + body,
                                          reasons=frozenset(CONTRACT_REASONS)),
        agencies, st.sampled_from(FINGERPRINTS), st.binary(max_size=300),
    )  # fmt: skip
    null_value = st.builds(lambda a: AgencyMessage("null_value", a, "bad", None, reasons=frozenset({"undecodable"})),
                           agencies)  # fmt: skip
    return st.one_of(
        random_bytes, unknown_fp, known_fp_garbage, _mangled(), _contract_invalid(), _valid(), _wrong_topic(),
        _hub_record(), null_value, _unserved(),
    )


# -- (a) the ingest gateway: HTTP requests -------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Doc(Redacted):
    """One NDJSON line (or the whole JSON body) and what must happen to it.

    ``statuses``: the per-line statuses a ``bad`` line may get. ``event_id``: the id a ``good`` line must be
    accepted with (None: the test fills it in — see :meth:`IngestRequest.body`).
    """

    family: str
    label: Label
    raw: bytes | None = None
    doc: dict[str, Any] | None = None
    statuses: frozenset[int] = frozenset({400, 403, 422})


@dataclass(frozen=True, repr=False)
class IngestRequest(Redacted):
    """One ``POST /v1/events``: credentials, content type, extra headers and body lines."""

    auth: str | None
    auth_ok: bool
    agency: str
    """Whose events the lines are."""
    token_agency: str
    """Whose token authenticates the request (another agency's: every line must be refused)."""
    content_type: str | None
    content_ok: bool
    ndjson: bool
    lines: tuple[Doc, ...]
    blank_before: tuple[int, ...] = ()
    extra_headers: tuple[tuple[str, str], ...] = ()
    query: str = ""
    padding: int = 0
    """Spaces after the body (to go over the size limit)."""

    def render(self, ids: list[uuid.UUID]) -> tuple[bytes, list[str | None]]:
        """The body, with ``ids[i]`` as the event id of every document line; and each line's id."""
        parts: list[bytes] = []
        line_ids: list[str | None] = []
        for i, line in enumerate(self.lines):
            parts.extend(b"" for _ in range(self.blank_before.count(i)))
            if line.doc is not None:
                doc = json.loads(json.dumps(line.doc))
                envelope = doc.get("envelope")
                if isinstance(envelope, dict) and envelope.get("event_id") == "<id>":
                    envelope["event_id"] = str(ids[i])
                    line_ids.append(str(ids[i]))
                else:
                    line_ids.append(None)
                parts.append(json.dumps(doc, ensure_ascii=bool(i % 2)).encode())
            else:
                assert line.raw is not None
                parts.append(line.raw)
                line_ids.append(None)
        body = b"\n".join(parts) if self.ndjson else parts[0]
        return body + b" " * self.padding, line_ids


def _json_doc(event: Event, agency: str) -> dict[str, Any]:
    doc = event.model_dump(mode="json")
    doc["envelope"]["event_id"] = "<id>"
    doc["envelope"]["source_agency"] = agency
    return doc


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def _good_doc(draw: st.DrawFn, agency: str) -> Doc:
    """A valid event of ``agency``, possibly with a spoofed/absent source_agency or another pnr form."""
    doc = _json_doc(draw(valid_events(types_of(agency))), agency)
    env = doc["envelope"]
    spoof = draw(st.sampled_from(["none", "other", "garbage", "absent", "number"]))
    if spoof == "other":
        env["source_agency"] = draw(st.sampled_from([a for a in (*AGENCIES, "region", "hub") if a != agency]))
    elif spoof == "garbage":
        env["source_agency"] = draw(TEXT)
    elif spoof == "absent":
        del env["source_agency"]
    elif spoof == "number":
        env["source_agency"] = 7
    subject = env.get("subject")
    if subject and draw(st.booleans()):
        number = subject["personnummer"]
        subject["personnummer"] = f"{number[:8]}-{number[8:]}"
    return Doc(f"good:spoof-{spoof}", "good", doc=doc)


def _drop(path: list[str]) -> Any:
    def apply(doc: dict[str, Any]) -> None:
        target: Any = doc
        for p in path[:-1]:
            target = target[p]
        del target[path[-1]]

    return apply


@st.composite
def _bad_doc(draw: st.DrawFn, agency: str) -> Doc:
    """A document the gateway must refuse, with the statuses it may refuse it with."""
    event = draw(valid_events(types_of(agency)))
    doc = _json_doc(event, agency)
    env = doc["envelope"]
    how = draw(st.sampled_from([
        "drop_field", "drop_payload", "foreign_type", "unknown_type", "type_not_string", "bad_event_id",
        "bad_municipality", "bad_personnummer", "extra_field", "wrong_type", "too_deep", "not_object",
        "truncated", "invalid_utf8", "nan", "public_with_subject", "random_bytes", "lone_surrogate",
    ]))  # fmt: skip
    statuses = frozenset({422})
    raw: bytes | None = None
    if how == "drop_field":
        name = draw(st.sampled_from(["event_id", "event_type", "schema_version", "source_unit", "municipality_code",
                                     "occurred_at", "recorded_at", "data_class"]))  # fmt: skip
        del env[name]
    elif how == "drop_payload":
        del doc["payload"]
    elif how == "foreign_type":
        env["event_type"] = draw(st.sampled_from([t for t in EVENT_MODELS if agency_of(t) != agency]))
        statuses = frozenset({403})
    elif how == "unknown_type":
        env["event_type"] = f"{agency}.{draw(st.sampled_from(['no_such_event', 'x', 'minor_suspected_v2']))}"
    elif how == "type_not_string":
        env["event_type"] = draw(st.none() | st.integers() | st.lists(TEXT, max_size=2))
    elif how == "bad_event_id":
        env["event_id"] = "x" + draw(TEXT)
    elif how == "bad_municipality":
        env["municipality_code"] = draw(st.sampled_from(["9999", "0000", "1", "", "13 ", "１３８１"]))
    elif how == "bad_personnummer":
        if env.get("subject"):
            env["subject"]["personnummer"] = wrong_check_digit(env["subject"]["personnummer"])
        else:
            env["schema_version"] = 0
    elif how == "extra_field":
        doc[draw(st.sampled_from(["payload", "envelope"]))]["zz_unknown"] = draw(JSON_VALUES)
    elif how == "wrong_type":
        name, value = draw(st.sampled_from([("schema_version", "one"), ("occurred_at", "igår kväll"),
                                            ("recorded_at", "yesterday"), ("data_class", "secret"), ("subject", "x")]))
        env[name] = value
    elif how == "too_deep":
        depth = draw(st.integers(33, 200))
        doc["payload"]["deep"] = json.loads("[" * depth + "]" * depth)
        statuses = frozenset({400})
    elif how == "not_object":
        raw = json.dumps(draw(st.one_of(st.lists(JSON_VALUES, max_size=3), st.integers(), st.text(max_size=10),
                                         st.none(), st.booleans()))).encode()  # fmt: skip
    elif how == "truncated":
        text = json.dumps(doc).encode()
        raw = text[: draw(st.integers(1, len(text) - 1))]
        statuses = frozenset({400})
    elif how == "invalid_utf8":
        text = json.dumps(doc).encode()
        at = text.index(b'"source_unit": "') + len(b'"source_unit": "')
        raw = text[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc"])) + text[at:]
        statuses = frozenset({400})
    elif how == "nan":
        raw = json.dumps(doc).replace('"schema_version": 1', '"schema_version": NaN').encode()
        if b"NaN" not in raw:
            raw = b'{"envelope": Infinity}'
        statuses = frozenset({400})
    elif how == "public_with_subject":
        if env.get("subject"):
            env["data_class"] = "public"
        else:
            env["subject"] = {"personnummer": "19121212-1213"}  # and a wrong check digit
    elif how == "lone_surrogate":  # valid JSON, but no UTF-8 (and so no Avro string) can carry it
        env["event_id"] = str(case_id("lone_surrogate"))
        raw = json.dumps(doc).replace('"source_unit": "', '"source_unit": "\\ud800', 1).encode()
    elif how == "random_bytes":
        raw = b"#" + draw(st.binary(max_size=200)).replace(b"\n", b" ")
        statuses = frozenset({400})
    if raw is not None:
        raw = raw.replace(b"\n", b" ")
        if not raw.strip():
            raw = b"#"
        return Doc(f"bad:{how}", "bad", raw=raw, statuses=statuses)
    return Doc(f"bad:{how}", "bad", doc=doc, statuses=statuses)


@st.composite
def _any_doc(draw: st.DrawFn, agency: str) -> Doc:
    """A valid document with one random change that may or may not break it."""
    doc = _json_doc(draw(valid_events(types_of(agency))), agency)
    section = draw(st.sampled_from(["envelope", "payload"]))
    keys = sorted(k for k in doc[section] if k != "event_id")
    if keys and draw(st.booleans()):
        doc[section][draw(st.sampled_from(keys))] = draw(JSON_VALUES)
    elif keys:
        del doc[section][draw(st.sampled_from(keys))]
    return Doc(f"any:{section}", "any", doc=doc, statuses=frozenset({400, 403, 422}))


def _templates() -> dict[str, list[dict[str, Any]]]:
    """Plain valid documents per agency: the good lines around the fuzzed ones (cheap to make)."""
    from tests import factories as f

    events = [f.incident_notice(), f.minor_suspected(), f.extremism(), f.youth_activity(), f.honour_concern(),
              f.consent("sig"), f.release()]  # fmt: skip
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        agency = agency_of(event.envelope.event_type)
        out.setdefault(agency, []).append(_json_doc(event, agency))
    return out


TEMPLATES: Final = _templates()


def rare(one_in: int) -> st.SearchStrategy[bool]:
    """True about once in ``one_in`` draws (Hypothesis favours the first choice: False)."""
    return st.sampled_from([False] * (one_in - 1) + [True])


TOKENS: Final = {
    "polisen": "fuzz-polisen-token-1",
    "kommun": "fuzz-kommun-token-1",
    "kriminalvarden": "fuzz-kriminalvarden-token-1",
}
EXPIRED_TOKEN: Final = "fuzz-kommun-token-expired"
PRINTABLE: Final = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@st.composite
def _auth(draw: st.DrawFn, agency: str) -> tuple[str | None, bool]:
    token = TOKENS[agency]
    return draw(st.sampled_from([
        (f"Bearer {token}", True), (f"bearer {token}", True), (f"BEARER   {token}  ", True),
        (None, False), ("", False), ("Bearer", False), ("Bearer ", False), (f"Basic {token}", False),
        (f"Bearer {EXPIRED_TOKEN}", False), (f"Bearer {token}x", False), (f"Bearer {token[:-1]}", False),
        (f"Token {token}", False),
    ]) | st.builds(lambda t: (f"Bearer {t}", False), st.text(PRINTABLE, max_size=40))
        | st.builds(lambda t: (t, False), st.text(PRINTABLE, max_size=40)))  # fmt: skip


CONTENT_TYPES: Final = st.sampled_from([
    ("application/json", True, False), ("application/json; charset=utf-8", True, False),
    ("application/x-ndjson", True, True), ("application/ndjson", True, True), ("APPLICATION/X-NDJSON", True, True),
    ("text/plain", False, False), ("text/csv", False, False), ("application/xml", False, False),
    ("multipart/form-data; boundary=x", False, False), (None, False, False), ("", False, False),
]) | st.builds(lambda t: ("text/" + t, False, False), st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A),
                                                             min_size=1, max_size=10))  # fmt: skip


@cache
def _docs(agency: str) -> st.SearchStrategy[Doc]:
    return st.one_of(_good_doc(agency), _bad_doc(agency), _any_doc(agency))


@cache
def _auths(agency: str) -> st.SearchStrategy[tuple[str | None, bool]]:
    return _auth(agency)


@st.composite
def ingest_requests(draw: st.DrawFn, max_lines: int, max_body: int) -> IngestRequest:
    """A request to the gateway: mostly well authenticated bodies of mixed lines, sometimes hostile headers."""
    agency = token_agency = draw(st.sampled_from(sorted(TOKENS)))
    auth, auth_ok = draw(_auths(agency)) if draw(rare(10)) else (f"Bearer {TOKENS[agency]}", True)
    if draw(rare(20)):  # another agency's valid credentials
        token_agency = draw(st.sampled_from([a for a in sorted(TOKENS) if a != agency]))
        auth, auth_ok = f"Bearer {TOKENS[token_agency]}", True
    if draw(rare(10)):
        content_type, content_ok, ndjson = draw(CONTENT_TYPES)
    else:
        content_type, content_ok, ndjson = ("application/x-ndjson", True, True) if draw(st.booleans()) \
            else ("application/json", True, False)
    doc = _docs(agency)
    if ndjson:
        many = draw(rare(20))
        n = draw(st.integers(max_lines + 1, max_lines + 3)) if many else draw(st.integers(1, 6))
        fuzzed = draw(st.lists(doc, min_size=1, max_size=min(n, 3)))
        templates = TEMPLATES[agency]
        good = [Doc("good:template", "good", doc=templates[draw(st.integers(0, len(templates) - 1))])
                for _ in range(n - len(fuzzed))]  # fmt: skip
        lines = tuple(good[: len(good) // 2] + fuzzed + good[len(good) // 2 :])
        blanks = tuple(draw(st.lists(st.integers(0, len(lines) - 1), max_size=2)))
    else:
        lines, blanks = (draw(doc),), ()
    headers = tuple(draw(st.lists(st.tuples(st.sampled_from(["User-Agent", "Referer", "X-Request-Id", "Accept"]),
                                            st.text(PRINTABLE, max_size=40)), max_size=2)))  # fmt: skip
    subject = personnummer_12(date(2010, 6, 1), 42)
    if draw(rare(10)):  # a personnummer in headers and the query: must not reach a log line
        headers += (("User-Agent", f"agent {subject}"), ("Referer", f"https://x/?p={subject}"))
    query = f"?personnummer={subject}" if draw(rare(20)) else ""
    padding = draw(st.integers(max_body, max_body + 100)) if draw(rare(30)) else 0
    return IngestRequest(auth, auth_ok, agency, token_agency, content_type, content_ok, ndjson, lines, blanks,
                         headers, query, padding)  # fmt: skip


# -- (c) file drop: files in the drop folder -------------------------------------------------------------

DROP_AGENCIES: Final = ("kommun", "kriminalvarden")


@dataclass(frozen=True, repr=False)
class DropRow(Redacted):
    """One record of a dropped file: ``good`` (it must become ``expected``) or ``bad``/``any``."""

    family: str
    label: Label
    row: int
    expected: Event | None = None


@dataclass(frozen=True, repr=False)
class DropFile(Redacted):
    """A file to drop: its name and bytes, the agency whose folder it goes to, and what must happen.

    ``name_refused``: the name must be refused unread (moved to ``rejected/``). ``ignored``: not a
    ``.csv``/``.json`` name, left alone. ``whole_file``: the file as a whole must be refused (one reject
    with row 0). ``rows``: what must happen to each record otherwise.
    """

    family: str
    agency: str
    name: str
    data: bytes
    name_refused: bool = False
    ignored: bool = False
    whole_file: bool = False
    rows: tuple[DropRow, ...] = ()


_FORMAT_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=30)


def _plain(text: str) -> str:
    """``text`` as the file formats give it back: stripped, never empty."""
    return text.strip() or "x"


def _expressible(fmt: KindFormat, event: Event) -> Event | None:
    """``event`` with its values as a file can carry them (stripped text, 4-digit codes, ...), validated."""
    data = event.model_dump(mode="python")
    env, payload = data["envelope"], data["payload"]
    if env["municipality_code"] == "13":
        env["municipality_code"] = "1381"
    env["area"] = _plain(env["area"]) if env["area"] is not None and env["area"].strip() else None
    if env["subject"] is not None:
        env["subject"]["birth_year"] = int(env["subject"]["personnummer"][:4])
    env["source_unit"] = "fuzz"
    env["source_agency"] = Agency(fmt.agency)
    env["data_class"] = fmt.data_class
    for col in fmt.columns:
        value = payload.get(col.name)
        if value is None:
            continue
        if col.type == "text":
            payload[col.name] = _plain(str(value))
        elif col.type == "list":
            payload[col.name] = [_plain(v).replace(LIST_SEPARATOR, "/") for v in value]
        elif col.type == "decimal":
            payload[col.name] = round(min(float(value), 999_999.0), 3)
    try:
        return fmt.model.model_validate(data)
    except ValueError:
        return None


def _cells(fmt: KindFormat, event: Event, csv_form: bool) -> dict[str, object]:
    """The row of ``event``: CSV text cells, or JSON values."""
    env = event.envelope
    cells: dict[str, object] = {
        "kind": fmt.kind,
        "municipality_code": env.municipality_code,
        "occurred_at": env.occurred_at.isoformat(),
        "recorded_at": env.recorded_at.isoformat(),
        "area": env.area,
        "personnummer": env.subject.personnummer if env.subject is not None else None,
    }
    payload = event.payload  # type: ignore[attr-defined]
    for col in fmt.columns:
        value = getattr(payload, col.name)
        if value is None:
            cells[col.name] = None
        elif col.type in ("date", "timestamp"):
            cells[col.name] = value.isoformat()
        elif col.type == "bool":
            cells[col.name] = ("ja" if value else "nej") if csv_form else bool(value)
        elif col.type == "list":
            cells[col.name] = LIST_SEPARATOR.join(value) if csv_form else list(value)
        elif col.type == "decimal":
            cells[col.name] = f"{value:.3f}" if csv_form else value
        elif col.type == "count":
            cells[col.name] = str(value) if csv_form else value
        else:
            cells[col.name] = str(value.value if hasattr(value, "value") else value)
    if csv_form:
        cells = {k: "" if v is None else v for k, v in cells.items()}
    return cells


@cache
def _kind_events(kind: str) -> st.SearchStrategy[Event | None]:
    fmt = KINDS[kind]
    return models(fmt.model).map(lambda e: _expressible(fmt, e))  # type: ignore[arg-type]


_BAD_ROWS: Final = ("empty_required", "unknown_kind", "foreign_kind", "bad_date", "bad_count", "bad_bool", "bad_pnr",
                    "bad_municipality", "extra_column", "extra_values", "not_object", "nested",
                    "lone_surrogate")  # fmt: skip


def _break_row(draw: st.DrawFn, fmt: KindFormat, cells: dict[str, object], csv_form: bool) -> str:
    """Change ``cells`` so the row must be rejected; the name of the change."""
    how = draw(st.sampled_from(_BAD_ROWS))
    types = {c.name: c.type for c in fmt.columns}
    of_type = {t: [n for n, ct in types.items() if ct == t] for t in ("date", "timestamp", "count", "bool")}
    required = ["municipality_code", "occurred_at", *(c.name for c in fmt.columns if c.required)]
    empty: object = "" if csv_form else draw(st.sampled_from([None, "", "   ", []]))
    if how == "empty_required":
        cells[draw(st.sampled_from(required))] = empty
    elif how == "unknown_kind":
        cells["kind"] = draw(st.sampled_from(["no_such_kind", "Youth_Activity", "", "kind", "okänd"]))
    elif how == "foreign_kind":
        cells["kind"] = draw(st.sampled_from([k for k, f in KINDS.items() if f.agency != fmt.agency]))
    elif how == "bad_date" and (of_type["date"] or of_type["timestamp"]):
        name = draw(st.sampled_from(of_type["date"] + of_type["timestamp"]))
        cells[name] = draw(st.sampled_from(["2026-02-30", "igår", "14/8/2026", "2026-13-01T00:00", "20260814"]))
    elif how == "bad_date":
        cells["occurred_at"] = "igår kväll"
    elif how == "bad_count" and of_type["count"]:
        cells[draw(st.sampled_from(of_type["count"]))] = draw(st.sampled_from(["-1", "1.5", "tolv", "1e3"]))
    elif how == "bad_bool" and of_type["bool"]:
        cells[of_type["bool"][0]] = "kanske"
    elif how == "bad_pnr" and fmt.subject:
        cells["personnummer"] = wrong_check_digit(str(cells["personnummer"]))
    elif how == "bad_pnr":
        cells["personnummer"] = personnummer_12(date(2009, 4, 1), 17)  # given where none may be
    elif how == "bad_municipality":
        cells["municipality_code"] = draw(st.sampled_from(["9999", "12a4", "138", "13"]))
    elif how == "extra_column":
        cells["zz_extra"] = "x"
    elif how == "extra_values" and csv_form:
        cells["<extra>"] = "overflow"
    elif how == "not_object" and not csv_form:
        cells.clear()
        cells["<not an object>"] = draw(st.sampled_from([5, "x", [], None, [1, 2]]))
    elif how == "nested" and not csv_form:
        cells[draw(st.sampled_from(required))] = {"a": 1}
    elif how == "lone_surrogate" and not csv_form:  # valid JSON ("\ud800"), but no Avro string can hold it
        text_columns = [c.name for c in fmt.columns if c.type == "text" and c.required]
        cells[draw(st.sampled_from(text_columns))] = "x\ud800y"
    else:  # the change does not apply to this kind or format
        cells["occurred_at"] = "igår kväll"
        return "bad_date"
    return how


@st.composite
def _file_rows(draw: st.DrawFn, agency: str, csv_form: bool) -> tuple[list[dict[str, object] | None], list[DropRow]]:
    """Up to a few records (None: a blank CSV line) and what must happen to each."""
    kinds = [k for k, f in KINDS.items() if f.agency == agency]
    records: list[dict[str, object] | None] = []
    rows: list[DropRow] = []
    for _ in range(draw(st.integers(1, 4))):
        if csv_form and draw(rare(8)):
            records.append(None)
        fmt = KINDS[draw(st.sampled_from(kinds))]
        event = draw(_kind_events(fmt.kind))
        if event is None:  # not expressible in a file: a row with a missing column instead
            records.append({"kind": fmt.kind, "municipality_code": "1381"})
            rows.append(DropRow("bad:unexpressible", "bad", 0))
            continue
        cells = _cells(fmt, event, csv_form)
        label: Label = draw(st.sampled_from(["good", "good", "bad", "any"]))
        family = "good"
        if label == "bad":
            family = "bad:" + _break_row(draw, fmt, cells, csv_form)
        elif label == "any":
            name = draw(st.sampled_from(sorted(cells)))
            cells[name] = draw(_FORMAT_TEXT) if csv_form else draw(JSON_VALUES)
            family = "any"
        records.append(cells)
        rows.append(DropRow(family, label, 0, event if label == "good" else None))
    return records, rows


def _csv_bytes(records: list[dict[str, object] | None], delimiter: str, bom: bool, shuffle: list[int]) -> bytes:
    header: list[str] = []
    for r in records:
        header += [k for k in (r or {}) if k not in header and k != "<extra>"]
    header = [header[i] for i in shuffle if i < len(header)] + [h for i, h in enumerate(header) if i >= len(shuffle)]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    for r in records:
        if r is None:
            writer.writerow([])
            continue
        values = [str(r.get(h, "")) for h in header]
        if "<extra>" in r:
            values.append(str(r["<extra>"]))
        writer.writerow(values)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()


def _json_bytes(records: list[dict[str, object] | None], wrapped: bool) -> bytes:
    items = [r.get("<not an object>") if r is not None and "<not an object>" in r else r for r in records
             if r is not None]  # fmt: skip
    document = {"rows": items} if wrapped else items
    try:
        return json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate: only an escape can carry it
        return json.dumps(document).encode()


_WHOLE_FILE: Final = ("not_utf8", "no_kind_column", "repeated_column", "unbalanced_quotes", "json_syntax",
                      "json_not_array", "empty")  # fmt: skip


@st.composite
def _name(draw: st.DrawFn, n: int, suffix: str) -> tuple[str, bool, bool]:
    """A file name, whether it must be refused, and whether it is ignored (not .csv/.json)."""
    kind = draw(st.sampled_from(["plain", "plain", "plain", "personnummer", "hostile", "ignored", "random"]))
    if kind == "plain":
        return f"case-{n}{draw(st.sampled_from([suffix, suffix.upper()]))}", False, False
    if kind == "personnummer":  # a name that holds a personnummer: allowed, but never logged or printed
        number = personnummer_12(date(2011, 3, 5), 990 + n % 9)
        return draw(st.sampled_from([f"{n}-{number}{suffix}", f"{n}_{number[:8]}-{number[8:]}{suffix}"])), False, False
    if kind == "hostile":
        name = draw(st.sampled_from([f"..{n}{suffix}", f".{n}{suffix}", f"{n}..{suffix}", f"{n}\\..\\x{suffix}",
                                     f"..\\{n}{suffix}", f"{n}\x01{suffix}", f"{n}\x1b[31m{suffix}", f"{n}\n{suffix}",
                                     f"{n}\x7f{suffix}", f"{n}-" + "x" * 200 + suffix]))  # fmt: skip
        return name, True, False
    if kind == "ignored":
        return draw(st.sampled_from([f"{n}.txt", f"{n}{suffix}.bak", f"{n}{suffix} ", f"{n}"])), False, True
    text = draw(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/\x00"), max_size=20))
    name = f"{n}-{text}{suffix}"
    traversal = ".." in name or "\\" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
    try:
        validate_file_name(name)
        refused = False
    except FileNameError:
        refused = True
    assert refused or not traversal, "a name that could leave the folder or hide itself passed validation"
    return name, refused, False


_FILE_NUMBERS = itertools.count()


@st.composite
def drop_files(draw: st.DrawFn) -> DropFile:
    """A file for a drop folder (each with its own number in its name): name, content, what must happen."""
    n = next(_FILE_NUMBERS)
    agency = draw(st.sampled_from(DROP_AGENCIES))
    csv_form = draw(st.booleans())
    suffix = ".csv" if csv_form else ".json"
    name, refused, ignored = draw(_name(n, suffix))
    family = draw(st.sampled_from(["rows", "rows", "rows", "whole_file", "random", "mangled"]))
    records, rows = draw(_file_rows(agency, csv_form))
    if csv_form:
        shuffle = draw(st.permutations(list(range(6))))
        data = _csv_bytes(records, draw(st.sampled_from([",", ";"])), draw(st.booleans()), shuffle)
        numbers = [i for i, r in enumerate(records, start=2) if r is not None]
    else:
        data = _json_bytes(records, draw(st.booleans()))
        numbers = list(range(1, len(rows) + 1))
    numbered = tuple(DropRow(r.family, r.label, number, r.expected) for r, number in zip(rows, numbers, strict=True))
    if family == "rows":
        return DropFile(f"rows:{suffix}", agency, name, data, refused, ignored, rows=numbered)
    if family == "random":
        return DropFile(f"random:{suffix}", agency, name, draw(st.binary(max_size=300)), refused, ignored)
    if family == "mangled":
        raw = bytearray(data)
        for at, mask in draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)), min_size=1,
                                      max_size=4)):  # fmt: skip
            raw[at] ^= mask
        return DropFile(f"mangled:{suffix}", agency, name, bytes(raw), refused, ignored)
    how = draw(st.sampled_from(_WHOLE_FILE))
    text = data.decode("utf-8-sig")
    header, _, rest = text.partition("\r\n")
    if how == "not_utf8":
        data = data[: len(data) // 2] + b"\xff\xfe" + data[len(data) // 2 :]
    elif how == "empty":
        data = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\r\n\r\n", b"   "]))
    elif csv_form and how == "no_kind_column":
        data = text.replace("kind", "sort", 1).encode()
    elif csv_form and how == "repeated_column":
        delimiter = ";" if header.count(";") > header.count(",") else ","
        data = f"{header}{delimiter}kind\r\n{rest}".encode()
    elif csv_form:  # unbalanced quotes (and the JSON kinds, which a CSV cannot have)
        data = text.encode() + b'"unterminated\r\n'
    elif how == "json_not_array":
        data = json.dumps(draw(st.sampled_from([{"rows": 5}, {"x": []}, "rows", 5, None]))).encode()
    else:
        data = data[: max(1, len(data) - draw(st.integers(1, 20)))]
        data = data if data.strip() not in (b"[]", b"[", b"{") else b"[{"
    return DropFile(f"whole_file:{how}", agency, name, data, refused, ignored, whole_file=True)
