"""``hub tail``: what a receiver sees, as it arrives.

Reads ``deliver.<receiver>.<kommunkod>`` of one municipality (or the county) as that inbox's own principal
(``sig-1381``: ``HUB_KAFKA__USERNAME`` and its password, or the local credentials folder): the broker lets a
Laholm coordinator's credentials read Laholm's inbox and nothing else. Decodes each delivery and prints one
readable line per message, or one JSON object per line with ``--json``. The personnummer is masked
(``20110305-****``) unless ``--reveal`` is given: a terminal or a redirected stdout is not the place for it
by default. ``--reveal`` is refused (:func:`reveal_refusal`) unless the process reads as a principal of a
receiver that may get identities at all (``sig-…``, ``socialtjanst-…``): not as ``admin``, an operator, the
worker or another receiver's principal, whatever the broker would let those read.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from hub.access import AccessLog, Read
from hub.contract.errors import ContractError
from hub.contract.outputs import AccessChannel, Delivery, LagesbildAggregate
from hub.contract.serde import Serde
from hub.identity import receiver_principal
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.rules.receivers import RECEIVERS
from hub.settings import HubSettings
from hub.topics import Topics


@dataclass
class TailOptions:
    receiver: str
    municipality: str | None = None
    from_beginning: bool = False
    as_json: bool = False
    max_messages: int | None = None
    timeout_s: float | None = None
    reveal: bool = False


def mask(personnummer: str | None, reveal: bool) -> str | None:
    if personnummer is None or reveal:
        return personnummer
    return f"{personnummer[:8]}-****"


def as_dict(record: Any, reveal: bool) -> dict[str, Any]:
    data: dict[str, Any] = record.model_dump(mode="json")
    if isinstance(record, Delivery):
        data["personnummer"] = mask(record.personnummer, reveal)
        data["fields"] = {k: json.loads(v) for k, v in record.fields.items()}
    return data


def readable(record: Any, reveal: bool) -> str:
    if isinstance(record, Delivery):
        fields = ", ".join(f"{k.split('.', 1)[1]}={json.loads(v)}" for k, v in sorted(record.fields.items())
                           if k != "envelope.occurred_at")  # fmt: skip
        who = ""
        if record.personnummer:
            who = f" person {mask(record.personnummer, reveal)}"
        elif record.person_ref:
            who = f" person {record.person_ref}"
        when = record.occurred_at.strftime("%Y-%m-%d %H:%M")
        return (f"{when}  {record.receiver}.{record.municipality_code}  {record.event_type:<30} "
                f"[{record.legal_basis}]{who}  {fields}")  # fmt: skip
    if isinstance(record, LagesbildAggregate):
        count = "<3" if record.suppressed else str(record.count)
        where = f"lägesbild.{record.municipality_code}"
        return f"{record.period}  {where}  {record.category:<24} {record.area or '-'}: {count}"
    return str(record)


def municipality_for(settings: HubSettings, options: TailOptions) -> str:
    """The inbox's municipality: ``-m``, else the one of this process's principal (``sig-1381`` → 1381)."""
    if options.receiver not in RECEIVERS:
        raise ValueError(f"unknown receiver {options.receiver!r} (known: {', '.join(sorted(RECEIVERS))})")
    codes = [*settings.municipality_codes, settings.county_code]
    if options.municipality:
        if options.municipality not in codes:
            raise ValueError(f"unknown municipality {options.municipality!r} (served: {', '.join(codes)})")
        return options.municipality
    user = settings.kafka.username or ""
    prefix = f"{options.receiver}-"
    if user.startswith(prefix) and user[len(prefix):] in codes:
        return user[len(prefix):]
    raise ValueError(f"name the municipality with -m CODE: each {options.receiver} inbox is read with its own "
                     f"credentials ({receiver_principal(options.receiver, 'CODE')})")


def topics_for(settings: HubSettings, options: TailOptions) -> list[str]:
    code = municipality_for(settings, options)
    return [Topics(settings.topic_namespace).deliver(options.receiver, code)]


def reveal_refusal(settings: HubSettings, options: TailOptions) -> str | None:
    """Why ``--reveal`` is refused for this process, or None (also None without ``--reveal``).

    The principal is the one :func:`access_for_inbox` connects as; it must be an inbox principal
    (``<receiver>-<code>``) of a receiver that may get the personnummer (DESIGN.md: only ``sig`` and
    ``socialtjanst``, under consent or statute), and the inbox tailed must be that receiver's."""
    if not options.reveal:
        return None
    principal = settings.kafka.username or receiver_principal(options.receiver, municipality_for(settings, options))
    receiver, _, code = principal.rpartition("-")
    own = RECEIVERS.get(receiver)
    if own is None or not code.isdigit():
        return f"--reveal is refused: {principal} is not a receiver inbox's principal, and only an inbox's own " \
               "coordinators may see identities"  # fmt: skip
    if not own.may_identify:
        return f"--reveal is refused: {receiver} never receives identities (its deliveries carry none)"
    if receiver != options.receiver:
        return (f"--reveal is refused: {principal} may see identities in {receiver}'s inbox only, "
                f"not {options.receiver}'s")
    return None


def access_for_inbox(settings: HubSettings, options: TailOptions) -> KafkaAccess:
    """This process's principal, defaulting to the inbox's own (``sig-1381``)."""
    code = municipality_for(settings, options)
    return clients.access_for(settings, receiver_principal(options.receiver, code))


async def tail(settings: HubSettings, kafka: KafkaAccess, options: TailOptions, out: TextIO = sys.stdout) -> int:
    """Print deliveries until ``max_messages`` or ``timeout_s`` of silence; return how many were printed.

    Every read is recorded on ``hub.access`` (:mod:`hub.access`) before it is printed: the session's start,
    each batch (how many, which events' deliveries, whether ``--reveal``), its end. Raises the broker's
    authorisation error when ``kafka``'s principal may not read the inbox, and aiokafka's ``KafkaError`` when a
    read cannot be recorded (nothing of it is printed)."""
    serde = Serde()
    topic = topics_for(settings, options)[0]
    read = Read(kafka.principal or "unknown", AccessChannel.cli_tail, topic, options.receiver,
                municipality_for(settings, options), revealed=options.reveal)  # fmt: skip
    reads = AccessLog(kafka, Topics(settings.topic_namespace)).session(read)
    consumer = clients.consumer(kafka, topic, auto_offset_reset="earliest" if options.from_beginning else "latest")
    await consumer.start()
    printed = 0
    last = time.monotonic()
    try:
        await reads.start()
        while options.max_messages is None or printed < options.max_messages:
            if options.timeout_s is not None and time.monotonic() - last > options.timeout_s:
                break
            batch = await consumer.getmany(timeout_ms=250, max_records=500)
            lines: list[str] = []
            shown: list[str] = []
            decoded = 0
            for messages in batch.values():
                for m in messages:
                    last = time.monotonic()
                    if options.max_messages is not None and printed + decoded >= options.max_messages:
                        break
                    try:
                        record = serde.decode(m.value)
                    except ContractError as exc:
                        lines.append(f"(undecodable message at {m.topic}/{m.partition}@{m.offset}: {exc.reason})")
                        continue
                    decoded += 1
                    if isinstance(record, Delivery):
                        shown.append(record.event_id)
                    lines.append(json.dumps(as_dict(record, options.reveal), ensure_ascii=False) if options.as_json
                                 else readable(record, options.reveal))  # fmt: skip
            await reads.showing(len(lines), shown)  # recorded before a line of it is printed
            for line in lines:
                print(line, file=out, flush=True)
            printed += decoded
    finally:
        try:
            await reads.end()
        finally:
            await reads.log.stop()
            await consumer.stop()
    return printed
