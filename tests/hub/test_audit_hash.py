"""The audit hash is computed with orjson on the hot path: it must equal the canonical ``json.dumps`` form
every record before it was hashed with, or ``hub audit verify`` would call an old trail tampered."""

from __future__ import annotations

import hashlib
import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hub.audit import content_hash

text = st.text(st.characters(codec="utf-8"), max_size=40)  # control characters, non-ASCII, surrogate-free


def reference(content: dict[str, object]) -> str:
    """The hash as the trail was written before orjson: the standard library's canonical JSON."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@settings(max_examples=400, derandomize=True, deadline=None)
@given(seq=st.integers(0, 2**63 - 1), event_id=text, receiver=text, basis=text, reason=st.none() | text,
       fields=st.lists(text, max_size=4), at_ms=st.integers(-(2**41), 2**43), partition=st.integers(0, 2**31 - 1),
       unit=st.none() | text, credential=st.none() | text)  # fmt: skip
@example(seq=1, event_id="a\x7fb", receiver="sig", basis="public", reason=None, fields=[], at_ms=0, partition=0,
         unit=None, credential=None)  # DEL alone: ASCII, yet json.dumps escapes it and orjson does not
@example(seq=1, event_id="a\x7fb", receiver="sig", basis="LUL 6 §", reason="åäö \u2028", fields=["😀"], at_ms=0,
         partition=0, unit=None, credential="\x1f\x7f")  # DEL, a Swedish §, a line separator, a surrogate pair
@example(seq=1, event_id="\ud800", receiver="\udfff x", basis="b", reason=None, fields=[], at_ms=0, partition=0,
         unit="\ud83d", credential=None)  # lone surrogates: orjson refuses them, the standard library escapes them
@example(seq=1, event_id="e", receiver="sig", basis="LUL 6 § \ud800", reason="§ \udfff", fields=[], at_ms=0,
         partition=0, unit="\ud83d", credential=None)  # a lone surrogate in the cached texts and elsewhere at once
def test_hash_equals_the_canonical_json_form(seq: int, event_id: str, receiver: str, basis: str, reason: str | None,
                                              fields: list[str], at_ms: int, partition: int, unit: str | None,
                                              credential: str | None) -> None:  # fmt: skip
    content: dict[str, object] = {
        "seq": seq, "event_id": event_id, "receiver": receiver, "legal_basis": basis, "decision": "delivered",
        "reason": reason, "fields_disclosed": fields, "at": at_ms, "prev_hash": "0" * 64, "partition": partition,
    }  # fmt: skip
    if unit is not None:
        content["source_unit"] = unit
    if credential is not None:
        content["credential"] = credential
    got = content_hash(seq=seq, event_id=event_id, receiver=receiver, legal_basis=basis, decision="delivered",
                       reason=reason, fields_disclosed=fields, at_ms=at_ms, prev_hash="0" * 64, partition=partition,
                       source_unit=unit, credential=credential)  # fmt: skip
    assert got == reference(content)
