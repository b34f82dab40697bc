"""The audit trail: every disclosure and refusal, hash-chained per partition of ``hub.audit``.

Each record carries the hash of the record before it in the same partition (``prev_hash``) and its own
hash over its content and ``prev_hash``; the first record of a partition has ``prev_hash`` = 64 zeros.
Editing, deleting or reordering any record breaks the chain at that point, and ``hub audit verify`` names
the first broken record. The writer continues a partition's chain from the last record actually stored in
the topic (read when it takes the partition over), so a crash or rebalance never forks the chain.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from hub.contract.outputs import AccessRecord, AuditCheckpoint, AuditRecord, Decision
from hub.kafka.clients import KafkaAccess

if TYPE_CHECKING:
    from hub.audit_seal import Sealer

GENESIS = "0" * 64


def record_hash(record: AuditRecord) -> str:
    """SHA-256 over the record's content (everything but ``hash`` and ``mac``) in a canonical JSON form."""
    return content_hash(
        seq=record.seq, event_id=record.event_id, receiver=record.receiver, legal_basis=record.legal_basis,
        decision=record.decision.value, reason=record.reason, fields_disclosed=list(record.fields_disclosed),
        at_ms=int(record.at.timestamp() * 1000), prev_hash=record.prev_hash, partition=record.partition,
        source_unit=record.source_unit, credential=record.credential, extra=v4_content(record),
    )  # fmt: skip


V4_FIELDS = ("subject", "event_type", "municipality_code", "accessor", "channel", "target", "phase", "session_id",
             "items", "revealed")  # fmt: skip
"""The v4 fields that join the hashed content when set (``event_ids`` too, in every ``accessed`` record)."""


def v4_content(record: AuditRecord) -> dict[str, object] | None:
    """The v4 part of ``record``'s hashed content (None when it has none): what :meth:`AuditChain.append_datum`
    hashed."""
    extra: dict[str, object] = {k: v for k in V4_FIELDS if (v := getattr(record, k)) is not None}
    if record.decision is Decision.accessed:
        extra["event_ids"] = list(record.event_ids or [])
    return extra or None


def content_hash(
    *, seq: int, event_id: str, receiver: str, legal_basis: str, decision: str, reason: str | None,
    fields_disclosed: list[str], at_ms: int, prev_hash: str, partition: int, source_unit: str | None,
    credential: str | None, extra: Mapping[str, object] | None = None,
) -> str:  # fmt: skip
    """The hash of one record's content: SHA-256 over its canonical JSON (keys sorted, no spaces, ASCII with
    ``\\u`` escapes), the bytes ``json.dumps(sort_keys=True, separators=(",", ":"))`` writes — so every hash
    ever written holds — made by orjson (:func:`ascii_escaped` for DEL and non-ASCII text; tested against
    ``json.dumps``)."""
    content: dict[str, object] = {
        "seq": seq, "event_id": event_id, "receiver": receiver, "legal_basis": _escaped_text(legal_basis),
        "decision": decision, "reason": reason if reason is None else _escaped_text(reason),
        "fields_disclosed": fields_disclosed, "at": at_ms, "prev_hash": prev_hash, "partition": partition,
    }  # fmt: skip
    # v2 fields join the hashed content only when set, so the hashes of records written before them still hold.
    if source_unit is not None:
        content["source_unit"] = source_unit
    if credential is not None:
        content["credential"] = credential
    if extra:  # v4: the person key, event type and municipality; an access's who, how, what and how many
        content.update(extra)
    try:
        canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate: the standard library's encoder escapes it
        content.update(legal_basis=legal_basis, reason=reason)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    else:
        if not canonical.isascii() or b"\x7f" in canonical:
            canonical = ascii_escaped(canonical)
    return hashlib.sha256(canonical).hexdigest()


_TEXTS: dict[str, orjson.Fragment] = {}


def _escaped_text(text: str) -> orjson.Fragment:
    """``text`` as ``json.dumps`` writes it (ASCII, ``\\u`` escapes), once per text: the legal bases and refusal
    reasons are a few hundred texts, most with a "§" that would otherwise send every record through
    :func:`ascii_escaped`."""
    fragment = _TEXTS.get(text)
    if fragment is None:
        fragment = orjson.Fragment(json.dumps(text, ensure_ascii=True))
        if len(_TEXTS) < 4096:
            _TEXTS[text] = fragment
    return fragment


_NOT_PRINTABLE_ASCII = re.compile("[\x7f-\U0010ffff]")
_ESCAPES: dict[str, str] = {}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    escaped = _ESCAPES.get(char)
    if escaped is None:
        code = ord(char)
        if code > 0xFFFF:  # a surrogate pair, as json.dumps writes it
            code -= 0x10000
            escaped = f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"
        else:
            escaped = f"\\u{code:04x}"
        if len(_ESCAPES) < 4096:
            _ESCAPES[char] = escaped
    return escaped


def ascii_escaped(canonical: bytes) -> bytes:
    """orjson's JSON with DEL and every non-ASCII character written as ``json.dumps(ensure_ascii=True)`` writes
    them (``\\u00a7``; surrogate pairs above U+FFFF): such characters occur only inside strings, where orjson
    writes them raw, so this gives ``json.dumps``' bytes (hypothesis-tested) at a fraction of its cost — the
    legal bases are Swedish ("§")."""
    return _NOT_PRINTABLE_ASCII.sub(_escape, canonical.decode()).encode()


def access_fields(record: AccessRecord) -> dict[str, Any]:
    """The access part of the ``accessed`` audit record made of ``record`` (for :meth:`AuditChain.append_datum`)."""
    return {
        "accessor": record.accessor, "channel": record.channel, "target": record.target,
        "phase": record.phase, "session_id": record.session_id, "items": record.items,
        "event_ids": list(record.event_ids),
        "revealed": record.revealed,
    }  # fmt: skip


def millis(at: datetime) -> datetime:
    """``at`` in UTC truncated to milliseconds, as the contract stores it (Avro timestamp-millis)."""
    if at.tzinfo is UTC and not at.microsecond % 1000:
        return at  # already (the hot path truncates once per event)
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond - at.microsecond % 1000)


class AuditChain:
    """Appends records to per-partition chains; ``heads`` holds (next seq, last hash) per partition.

    With a :class:`hub.audit_seal.Sealer` every record gets its MAC, and a partition's chain gets a signed
    checkpoint after ``every`` records (:meth:`due`, written right after the record that makes it due), after
    ``seconds`` without one (:meth:`stale`), and when its chain is taken over from a record rather than a
    checkpoint. ``made`` collects the checkpoints written since the last commit, for the anchor store."""

    def __init__(self, sealer: Sealer | None = None, every: int = 1000, seconds: float = 60.0) -> None:
        self.heads: dict[int, tuple[int, str]] = {}
        self.sealer = sealer
        self.every = every
        self.seconds_ms = int(seconds * 1000)
        self._since: dict[int, int] = {}
        """Records since the partition's last checkpoint."""
        self._sealed_at: dict[int, int] = {}
        """When the partition's last checkpoint was made, or its chain was taken over (ms)."""
        self.made: list[dict[str, Any]] = []

    def has_head(self, partition: int) -> bool:
        return partition in self.heads

    def set_head(self, partition: int, last: AuditRecord | AuditCheckpoint | None) -> None:
        """Continue ``partition``'s chain after ``last`` (the last stored record or checkpoint), or start it."""
        if isinstance(last, AuditCheckpoint):
            self.heads[partition] = (last.seq + 1, last.head)
            self._since[partition], self._sealed_at[partition] = 0, int(last.at.timestamp() * 1000)
            return
        self.heads[partition] = (0, GENESIS) if last is None else (last.seq + 1, last.hash)
        # After a record, how many followed the last checkpoint is unknown (fewer than ``every``: a checkpoint
        # commits with the record that makes it due): the next record seals the chain, or ``seconds`` do.
        self._since[partition] = 0 if last is None else self.every
        self._sealed_at[partition] = int(time.time() * 1000)

    def forget(self, partition: int) -> None:
        self.heads.pop(partition, None)
        self._since.pop(partition, None)
        self._sealed_at.pop(partition, None)

    def append_datum(
        self, partition: int, *, event_id: str, receiver: str, legal_basis: str, decision: Decision,
        reason: str | None, fields_disclosed: list[str], at: datetime, source_unit: str | None = None,
        credential: str | None = None, subject: str | None = None, event_type: str | None = None,
        municipality_code: str | None = None, access: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The next record of ``partition``'s chain as the plain data its Avro schema takes (the hot path:
        no model validation; the values come from validated events and the rules)."""
        seq, prev = self.heads.get(partition, (0, GENESIS))
        at = millis(at)
        extra: dict[str, object] = {}
        if subject is not None:
            extra["subject"] = subject
        if event_type is not None:
            extra["event_type"] = event_type
        if municipality_code is not None:
            extra["municipality_code"] = municipality_code
        if access is not None:  # an ``accessed`` record (:func:`access_fields`)
            extra.update((k, v) for k, v in access.items() if v is not None)
        digest = content_hash(
            seq=seq, event_id=event_id, receiver=receiver, legal_basis=legal_basis, decision=decision.value,
            reason=reason, fields_disclosed=fields_disclosed, at_ms=int(at.timestamp() * 1000), prev_hash=prev,
            partition=partition, source_unit=source_unit, credential=credential, extra=extra,
        )  # fmt: skip
        self.heads[partition] = (seq + 1, digest)
        self._since[partition] = self._since.get(partition, 0) + 1
        datum = {
            "seq": seq, "event_id": event_id, "receiver": receiver, "legal_basis": legal_basis,
            "decision": decision.value, "reason": reason, "fields_disclosed": fields_disclosed, "at": at,
            "prev_hash": prev, "hash": digest, "partition": partition, "source_unit": source_unit,
            "credential": credential, "mac": None if self.sealer is None else self.sealer.record_mac(digest),
            "subject": subject, "event_type": event_type, "municipality_code": municipality_code,
            "accessor": None, "channel": None, "target": None, "phase": None, "session_id": None, "items": None,
            "event_ids": None,
            "revealed": None,
        }  # fmt: skip
        if access is not None:
            datum.update(access)
        return datum

    def append(
        self, partition: int, *, event_id: str, receiver: str, legal_basis: str, decision: Decision,
        reason: str | None, fields_disclosed: list[str], at: datetime, source_unit: str | None = None,
        credential: str | None = None, subject: str | None = None, event_type: str | None = None,
        municipality_code: str | None = None, access: Mapping[str, Any] | None = None,
    ) -> AuditRecord:  # fmt: skip
        """:meth:`append_datum` as a validated :class:`AuditRecord`."""
        return AuditRecord.model_validate(self.append_datum(
            partition, event_id=event_id, receiver=receiver, legal_basis=legal_basis, decision=decision,
            reason=reason, fields_disclosed=fields_disclosed, at=at, source_unit=source_unit, credential=credential,
            subject=subject, event_type=event_type, municipality_code=municipality_code, access=access,
        ))  # fmt: skip

    # -- checkpoints ---------------------------------------------------------------------------------------

    def due(self, partition: int) -> bool:
        """``partition`` has ``every`` records since its last checkpoint."""
        return self.sealer is not None and self._since.get(partition, 0) >= self.every

    def stale(self, now_ms: int) -> list[int]:
        """Partitions with records (or a taken-over head) not sealed for ``seconds``."""
        if self.sealer is None:
            return []
        return [p for p, n in self._since.items()
                if n and now_ms - self._sealed_at.get(p, 0) >= self.seconds_ms and self.heads[p][0] > 0]  # fmt: skip

    def checkpoint(self, partition: int, at: datetime) -> dict[str, Any]:
        """A signed checkpoint of ``partition``'s head now (its Avro data), also kept in ``made``."""
        assert self.sealer is not None  # noqa: S101 - callers check due() or stale() first
        seq, head = self.heads[partition]
        at = millis(at)
        datum = self.sealer.checkpoint(partition, seq - 1, head, at)
        self._since[partition], self._sealed_at[partition] = 0, int(time.time() * 1000)
        self.made.append(datum)
        return datum


@dataclass(frozen=True)
class Break:
    partition: int
    offset: int
    seq: int | None
    why: str

    def __str__(self) -> str:
        return f"partition {self.partition} offset {self.offset} (seq {self.seq}): {self.why}"


@dataclass
class VerifyResult:
    records: int
    partitions: int
    first_break: Break | None
    checkpoints: int = 0
    """Signed checkpoints found in the topic (their signatures checked when a key was given)."""
    anchored: int = 0
    """Anchored checkpoints checked against the topic."""
    macs: int = 0
    """Records whose MAC was checked."""
    unanchored: int = 0
    """Valid checkpoints of the topic not (yet) in the anchor store: a worker stopped between its commit and
    the anchoring, or no anchor store was given."""

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify(records: Iterable[tuple[int, int, AuditRecord | AuditCheckpoint]], sealer: Sealer | None = None,
           anchors: Mapping[int, list[dict[str, Any]]] | None = None, every: int | None = None) -> VerifyResult:
    """Check chains given (partition, offset, record or checkpoint) in offset order per partition.

    With ``sealer``: every record's MAC (once a partition has a record with one, every later record needs a
    valid one: records from before MACs existed pass only at the start) and every checkpoint's signature,
    partition, sequence number and head; with ``every``, no more than that many records between two
    checkpoints (more: a checkpoint was deleted). With ``anchors`` (partition → anchored checkpoints), each
    anchored checkpoint must be in the topic, at a record whose hash is its head: an anchored head past the
    partition's end is a truncation, another hash a rewrite. The first break is reported per partition, in
    offset order; the result names the first one over all partitions."""
    heads: dict[int, tuple[int, str]] = {}
    hashes: dict[int, dict[int, tuple[int, str]]] = {}
    """partition → seq → (offset, hash): what the anchors are checked against."""
    seen_cps: dict[int, set[tuple[int, str, str]]] = {}
    since: dict[int, int] = {}
    maced: set[int] = set()
    breaks: dict[int, Break] = {}
    result = VerifyResult(0, 0, None)
    ends: dict[int, int] = {}
    for partition, offset, rec in records:
        ends[partition] = offset
        if isinstance(rec, AuditCheckpoint):
            result.checkpoints += 1
            if partition in breaks:
                continue
            seq, prev = heads.get(partition, (0, GENESIS))
            why = None
            if sealer is not None and not sealer.signature_ok(rec):
                why = "checkpoint signature is not valid (forged or altered)"
            elif rec.partition != partition:
                why = f"checkpoint claims partition {rec.partition} (copied from another partition)"
            elif (rec.seq, rec.head) != (seq - 1, prev):
                why = f"checkpoint of seq {rec.seq} does not match the chain here (last seq {seq - 1})"
            if why:
                breaks[partition] = Break(partition, offset, rec.seq, why)
                continue
            seen_cps.setdefault(partition, set()).add((rec.seq, rec.head, rec.signature))
            since[partition] = 0
            continue
        result.records += 1
        if partition in breaks:
            continue
        seq, prev = heads.get(partition, (0, GENESIS))
        why = None
        if rec.partition != partition:
            why = f"record claims partition {rec.partition}"
        elif rec.seq != seq:
            why = f"expected seq {seq}, found {rec.seq} (a record was deleted, inserted or reordered)"
        elif rec.prev_hash != prev:
            why = "prev_hash does not match the previous record's hash"
        elif record_hash(rec) != rec.hash:
            why = "hash does not match the record's content (the record was edited)"
        elif sealer is not None and sealer.mac is not None and (rec.mac is not None or partition in maced):
            result.macs += 1
            maced.add(partition)
            if not sealer.mac_ok(rec.hash, rec.mac):
                why = ("MAC missing" if rec.mac is None else "MAC does not match") + \
                      " (rewritten without the MAC key)"
        if why is None and every is not None and partition in since:
            since[partition] += 1
            if since[partition] > every:
                why = f"more than {every} records since the last checkpoint (a checkpoint was deleted)"
        if why:
            breaks[partition] = Break(partition, offset, rec.seq, why)
            continue
        heads[partition] = (seq + 1, rec.hash)
        hashes.setdefault(partition, {})[seq] = (offset, rec.hash)
    for partition, entries in sorted((anchors or {}).items()):
        if partition in breaks:
            continue
        chain = hashes.get(partition, {})
        cps = seen_cps.get(partition, set())
        for entry in entries:
            result.anchored += 1
            raw, head = entry.get("seq"), entry.get("head")
            aseq: int | None = raw if isinstance(raw, int) else None
            known = aseq is not None and aseq in chain
            if sealer is not None and not sealer.signature_ok(entry):
                why = f"anchored checkpoint of seq {raw} has no valid signature (the anchor store was altered)"
            elif aseq is None or not known:
                last = max(chain) if chain else -1
                why = (f"anchored checkpoint of seq {raw} is past the end of the partition (last seq {last}): the "
                       f"trail was truncated")  # fmt: skip
                aseq = last
            elif chain[aseq][1] != head:
                why = f"record seq {aseq} is not the one the anchored checkpoint signed (the partition was rewritten)"
            elif (aseq, head, entry.get("signature")) not in cps:
                why = f"anchored checkpoint of seq {aseq} is missing from the topic (a checkpoint was deleted)"
            else:
                continue
            at = chain[aseq][0] if known and aseq is not None else ends.get(partition, -1)
            breaks[partition] = Break(partition, at, aseq, why)
            break
        anchored = {(e.get("seq"), e.get("head"), e.get("signature")) for e in entries}
        result.unanchored += len(cps - anchored)
    for partition in set(seen_cps) - set(anchors or {}):
        result.unanchored += len(seen_cps[partition])
    result.partitions = len(ends)
    if breaks:
        result.first_break = min(breaks.values(), key=lambda b: (b.partition, b.offset))
    return result


async def read_trail(kafka: KafkaAccess, topic: str) -> list[tuple[int, int, AuditRecord | AuditCheckpoint]]:
    """Every record and checkpoint of the audit topic as (partition, offset, record), in offset order per
    partition.

    Raises :class:`TrailError` at the first record that is not an audit record.
    """
    from hub.contract.errors import ContractError
    from hub.contract.serde import Serde
    from hub.kafka.read import read_to_end

    serde = Serde()
    out: list[tuple[int, int, AuditRecord | AuditCheckpoint]] = []
    async for m in read_to_end(kafka, [topic]):
        try:
            rec = serde.decode(m.value)
        except ContractError as exc:
            raise TrailError(f"partition {m.partition} offset {m.offset}: not an audit record ({exc.reason})") from exc
        if not isinstance(rec, AuditRecord | AuditCheckpoint):
            raise TrailError(f"partition {m.partition} offset {m.offset}: not an audit record")
        out.append((m.partition, m.offset, rec))
    return out


class TrailError(RuntimeError):
    """The audit topic holds something that is not an audit record."""
