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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from hub.contract.outputs import AuditRecord, Decision
from hub.kafka.clients import KafkaAccess

GENESIS = "0" * 64


def record_hash(record: AuditRecord) -> str:
    """SHA-256 over the record's content (everything but ``hash``) in a canonical JSON form."""
    return content_hash(
        seq=record.seq, event_id=record.event_id, receiver=record.receiver, legal_basis=record.legal_basis,
        decision=record.decision.value, reason=record.reason, fields_disclosed=list(record.fields_disclosed),
        at_ms=int(record.at.timestamp() * 1000), prev_hash=record.prev_hash, partition=record.partition,
        source_unit=record.source_unit, credential=record.credential,
    )  # fmt: skip


def content_hash(
    *, seq: int, event_id: str, receiver: str, legal_basis: str, decision: str, reason: str | None,
    fields_disclosed: list[str], at_ms: int, prev_hash: str, partition: int, source_unit: str | None,
    credential: str | None,
) -> str:  # fmt: skip
    """The hash of one record's content: SHA-256 over its canonical JSON (keys sorted, no spaces, ASCII with
    ``\\u`` escapes), the bytes ``json.dumps(sort_keys=True, separators=(",", ":"))`` writes — so every hash
    ever written holds — made by orjson (:func:`ascii_escaped` for DEL and non-ASCII text; tested against
    ``json.dumps``)."""
    content: dict[str, object] = {
        "seq": seq, "event_id": event_id, "receiver": receiver, "legal_basis": legal_basis, "decision": decision,
        "reason": reason, "fields_disclosed": fields_disclosed, "at": at_ms, "prev_hash": prev_hash,
        "partition": partition,
    }  # fmt: skip
    # v2 fields join the hashed content only when set, so the hashes of records written before them still hold.
    if source_unit is not None:
        content["source_unit"] = source_unit
    if credential is not None:
        content["credential"] = credential
    try:
        canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate: the standard library's encoder escapes it
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    else:
        if not canonical.isascii() or b"\x7f" in canonical:
            canonical = ascii_escaped(canonical)
    return hashlib.sha256(canonical).hexdigest()


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


def millis(at: datetime) -> datetime:
    """``at`` in UTC truncated to milliseconds, as the contract stores it (Avro timestamp-millis)."""
    if at.tzinfo is UTC and not at.microsecond % 1000:
        return at  # already (the hot path truncates once per event)
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond - at.microsecond % 1000)


class AuditChain:
    """Appends records to per-partition chains; ``heads`` holds (next seq, last hash) per partition."""

    def __init__(self) -> None:
        self.heads: dict[int, tuple[int, str]] = {}

    def has_head(self, partition: int) -> bool:
        return partition in self.heads

    def set_head(self, partition: int, last: AuditRecord | None) -> None:
        """Continue ``partition``'s chain after ``last`` (the last stored record), or start it."""
        self.heads[partition] = (0, GENESIS) if last is None else (last.seq + 1, last.hash)

    def forget(self, partition: int) -> None:
        self.heads.pop(partition, None)

    def append_datum(
        self, partition: int, *, event_id: str, receiver: str, legal_basis: str, decision: Decision,
        reason: str | None, fields_disclosed: list[str], at: datetime, source_unit: str | None = None,
        credential: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The next record of ``partition``'s chain as the plain data its Avro schema takes (the hot path:
        no model validation; the values come from validated events and the rules)."""
        seq, prev = self.heads.get(partition, (0, GENESIS))
        at = millis(at)
        digest = content_hash(
            seq=seq, event_id=event_id, receiver=receiver, legal_basis=legal_basis, decision=decision.value,
            reason=reason, fields_disclosed=fields_disclosed, at_ms=int(at.timestamp() * 1000), prev_hash=prev,
            partition=partition, source_unit=source_unit, credential=credential,
        )  # fmt: skip
        self.heads[partition] = (seq + 1, digest)
        return {
            "seq": seq, "event_id": event_id, "receiver": receiver, "legal_basis": legal_basis,
            "decision": decision.value, "reason": reason, "fields_disclosed": fields_disclosed, "at": at,
            "prev_hash": prev, "hash": digest, "partition": partition, "source_unit": source_unit,
            "credential": credential,
        }  # fmt: skip

    def append(
        self, partition: int, *, event_id: str, receiver: str, legal_basis: str, decision: Decision,
        reason: str | None, fields_disclosed: list[str], at: datetime, source_unit: str | None = None,
        credential: str | None = None,
    ) -> AuditRecord:  # fmt: skip
        """:meth:`append_datum` as a validated :class:`AuditRecord`."""
        return AuditRecord.model_validate(self.append_datum(
            partition, event_id=event_id, receiver=receiver, legal_basis=legal_basis, decision=decision,
            reason=reason, fields_disclosed=fields_disclosed, at=at, source_unit=source_unit, credential=credential,
        ))  # fmt: skip


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

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify(records: Iterable[tuple[int, int, AuditRecord]]) -> VerifyResult:
    """Check chains given (partition, offset, record) in offset order per partition."""
    heads: dict[int, tuple[int, str]] = {}
    count = 0
    first: Break | None = None
    for partition, offset, rec in records:
        count += 1
        if first is not None:
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
        if why:
            first = Break(partition, offset, rec.seq, why)
            continue
        heads[partition] = (seq + 1, rec.hash)
    return VerifyResult(count, len(heads), first)


async def read_trail(kafka: KafkaAccess, topic: str) -> list[tuple[int, int, AuditRecord]]:
    """Every record of the audit topic as (partition, offset, record), in offset order per partition.

    Raises :class:`TrailError` at the first record that is not an audit record.
    """
    from hub.contract.errors import ContractError
    from hub.contract.serde import Serde
    from hub.kafka.read import read_to_end

    serde = Serde()
    out: list[tuple[int, int, AuditRecord]] = []
    async for m in read_to_end(kafka, [topic]):
        try:
            rec = serde.decode(m.value)
        except ContractError as exc:
            raise TrailError(f"partition {m.partition} offset {m.offset}: not an audit record ({exc.reason})") from exc
        if not isinstance(rec, AuditRecord):
            raise TrailError(f"partition {m.partition} offset {m.offset}: not an audit record")
        out.append((m.partition, m.offset, rec))
    return out


class TrailError(RuntimeError):
    """The audit topic holds something that is not an audit record."""
