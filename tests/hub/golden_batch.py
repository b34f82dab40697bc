"""The batch-equivalence golden: a seeded stream of mixed events with bad input, and the facts its outputs hold.

The worker used to process one message at a time (:meth:`hub.pipeline.Pipeline.process`, and each lägesbild
increment through :meth:`hub.lagesbild_stage.LagesbildStage.process`); it now processes a batch at a time
(:class:`hub.worker.batch.BatchProcessor`). ``tests/hub/test_batch_equivalence.py`` checks that the batch path
gives the same deliveries, dead letters, audit decisions and lägesbild figures as the per-message code did —
against the compact golden file ``tests/hub/golden/batch_equivalence.json``, which this module wrote once by
running the per-message code of commit 0e1e820 (the oracle), not against a second implementation.

- :func:`stream` / :func:`messages`: the input. ``tests.factories.mixed_events`` (with seeded event ids),
  consent given/withdrawn for some of the released persons, each event encoded on its source unit's topic,
  partition = crc32 of the connector's key mod 4, offsets increasing per (topic, partition); plus about 1 %
  bad input mixed in (garbage and empty values, truncated Avro, tombstones, events on another unit's topic,
  re-sent duplicates, unknown fingerprints, a hub record that is no event, an invalid payload) and a few
  uncountable increments at the start of ``hub.lagesbild``. Only code that is the same in both trees is used.
- :func:`canonical`: a run's outputs reduced to timestamp-free facts, then to a count and a SHA-256 per
  category and small count tables (so a mismatch says where).
- :func:`run_oracle`: the per-message walk, as ``bench/bench_pipeline.py`` does it (plain dict tables, one
  :class:`AuditChain`, every increment and the county copies it makes through the stage).

Write the golden with the oracle's code first on the path (and check the printed paths):

    git -C /work/main worktree add /tmp/oracle 0e1e820
    cd /tmp/oracle && PYTHONPATH=/tmp/oracle /work/main/.venv/bin/python /work/main/tests/hub/golden_batch.py --write
    git -C /work/main worktree remove --force /tmp/oracle
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
import sys
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the tree named by PYTHONPATH (the oracle's), else this one
    sys.path.append(str(Path(__file__).resolve().parents[2]))

from pydantic import SecretStr

from connectors.base import event_key, event_topic
from hub.audit import AuditChain
from hub.contract.envelope import Event
from hub.contract.outputs import AreaAlert, AuditRecord, Deadletter, Delivery, LagesbildAggregate, PeriodKind
from hub.contract.serde import MAGIC, Serde
from hub.flows.lagesbild import Counts, WaveRule
from hub.flows.routing import Router
from hub.lagesbild_stage import LagesbildStage
from hub.pipeline import Message, Output, Pipeline
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.settings import DEV_SECRET, HubSettings
from hub.topics import Topics
from tests import factories

GOLDEN = Path(__file__).resolve().parent / "golden" / "batch_equivalence.json"
SEED = 7
FULL = 20_000
"""Mixed events in the full stream (bad input and consents come on top)."""
SUBSET = 2_000
"""Mixed events in the small stream the other batch sizes run."""
PARTITIONS = 4
BAD_RATE = 0.011
CODES = ["1315", "1380", "1381", "1382", "1383", "1384"]
Facts = dict[str, list[dict[str, Any]]]
"""Timestamp-free facts per category (:data:`CATEGORIES`)."""
STATE_TOPICS = ("hub.consent", "hub.dedup", "hub.lagesbild-alerts")
INCREMENT_FIELDS = ("receiver", "municipality_code", "area", "category", "week", "day")
"""The state whose final contents are compared too: consent, the dedup marks (where each event was first
seen; not when) and the wave-alert flags."""


def hub_settings() -> HubSettings:
    """The settings of both runs, independent of the environment where it matters."""
    return HubSettings(env="dev", secret_key=SecretStr(DEV_SECRET), pseudonym_keys={}, topic_namespace="",
                       county_code="13", municipality_codes=CODES, dedup_window_hours=168.0)  # fmt: skip


def wave_rule(settings: HubSettings) -> WaveRule:
    lb = settings.lagesbild
    return WaveRule(min_count=lb.alert_min_count, factor=lb.alert_factor, trailing_weeks=lb.alert_trailing_weeks)


def partition_of(key: bytes | None) -> int:
    """The partition of a keyed record (the same key always the same partition, as Kafka's partitioner)."""
    return zlib.crc32(key or b"") % PARTITIONS


# -- the input -----------------------------------------------------------------------------------------


@contextmanager
def seeded_uuid4(seed: int) -> Iterator[None]:
    """``uuid.uuid4`` reproducible (the factories give every event a fresh id)."""
    rng = random.Random(f"uuid4:{seed}")
    original = uuid.uuid4
    uuid.uuid4 = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)
    try:
        yield
    finally:
        uuid.uuid4 = original


@dataclass
class Stream:
    messages: list[Message] = field(default_factory=list)
    bad: dict[tuple[str, int, int], str] = field(default_factory=dict)
    """(topic, partition, offset) → kind of every bad message."""

    def kinds(self) -> dict[str, int]:
        return dict(sorted(collections.Counter(self.bad.values()).items()))


BAD_KINDS = ("garbage", "empty", "truncated", "tombstone", "wrong_topic", "duplicate", "unknown_fingerprint",
             "not_an_event", "invalid_payload")  # fmt: skip


def _bad_increments() -> list[bytes]:
    good = {"receiver": "lagesbild", "municipality_code": "1381", "area": "Centrum", "category": "theft",
            "week": "2026-W33", "day": "2026-08-14", "event_id": "00000000-0000-4000-8000-000000000001",
            "event_type": "polisen.incident_notice", "participants": None}  # fmt: skip
    return [
        b"not json at all", b"[1, 2, 3]", json.dumps({"receiver": "lagesbild"}).encode(),
        json.dumps({**good, "municipality_code": "0180"}).encode(), json.dumps({**good, "week": "2026-W60"}).encode(),
        json.dumps({**good, "day": "2026-13-01"}).encode(), json.dumps({**good, "event_id": 7}).encode(), b"",
    ]  # fmt: skip


def stream(n: int = FULL, seed: int = SEED) -> Stream:
    """``n`` mixed events and their consents, with bad input mixed in, as the worker reads them."""
    settings = hub_settings()
    serde, topics, pseudonyms = Serde(), Topics(), Pseudonymiser(settings)
    rng = random.Random(f"stream:{seed}")
    with seeded_uuid4(seed):
        events = list(factories.mixed_events(n, seed=seed))
        planned: dict[int, list[Event]] = collections.defaultdict(list)  # position → consents to send before it
        for i, e in enumerate(events):
            if e.envelope.event_type == "kriminalvarden.release_scheduled" and rng.random() < 0.04:
                pnr = e.envelope.subject.personnummer  # type: ignore[union-attr]
                home = e.payload.home_municipality_code  # type: ignore[attr-defined]
                planned[i].append(factories.consent("release_planning", pnr, home))
                if rng.random() < 0.3:  # withdrawn later; sometimes the older consent is re-sent after that
                    later = i + rng.randint(20, 3000)
                    planned[later].append(factories.consent("release_planning", pnr, home, withdraw=True,
                                                            occurred_at=factories.NOW + timedelta(days=1)))  # fmt: skip
                    if rng.random() < 0.5:
                        planned[later + rng.randint(1, 500)].append(factories.consent("release_planning", pnr, home))
        ordered: list[Event] = []
        for i, e in enumerate(events):
            ordered += planned.pop(i, [])
            ordered.append(e)
        not_event = serde.encode(LagesbildAggregate(
            municipality_code="1381", area=None, category="theft", period_kind=PeriodKind.week, period="2026-W33",
            count=None, suppressed=True, updated_at=factories.NOW,
        ))  # fmt: skip

    out = Stream()
    offsets: collections.Counter[tuple[str, int]] = collections.Counter()
    units = topics.sources(CODES)

    def send(topic: str, key: bytes | None, value: bytes | None, bad: str | None = None) -> None:
        p = partition_of(key)
        offset = offsets[(topic, p)]
        offsets[(topic, p)] += 1
        unit = topics.unit_of(topic)
        credential = f"gw-{unit.name}" if unit is not None and unit.municipality else None
        out.messages.append(Message(topic, p, offset, key, value, credential))
        if bad is not None:
            out.bad[(topic, p, offset)] = bad

    for i, value in enumerate(_bad_increments()):  # uncountable increments, at the start of their partitions
        key = f"{('lagesbild', 'ungdom')[i % 2]}|{CODES[i % len(CODES)]}".encode()
        send(topics.lagesbild, key, value, "bad_increment")
    sent: list[tuple[str, bytes, bytes]] = []
    for e in ordered:
        topic, key, value = event_topic(e, topics), event_key(e, pseudonyms), serde.encode(e)
        send(topic, key, value)
        sent.append((topic, key, value))
        if rng.random() >= BAD_RATE:
            continue
        kind = rng.choice(BAD_KINDS)
        if kind == "garbage":
            send(rng.choice(units), key, rng.randbytes(rng.randint(1, 80)), kind)
        elif kind == "empty":
            send(topic, key, b"", kind)
        elif kind == "truncated":
            send(topic, key, value[: rng.randint(1, len(value) - 1)], kind)
        elif kind == "tombstone":
            send(topic, key, None, kind)
        elif kind == "wrong_topic":
            send(rng.choice([u for u in units if u != topic]), key, value, kind)
        elif kind == "duplicate":  # the same event re-sent later: same topic, same key, a later offset
            send(*rng.choice(sent), kind)
        elif kind == "unknown_fingerprint":
            fingerprint = rng.randbytes(8)
            assert serde.registry.by_fingerprint(fingerprint) is None
            send(topic, key, MAGIC + fingerprint + value[len(MAGIC) + 8 :], kind)
        elif kind == "not_an_event":
            send(topic, key, not_event, kind)
        else:  # valid Avro, but not a valid event (a municipality code that does not exist)
            env = e.envelope.model_copy(update={"municipality_code": "9999"})
            send(topic, key, serde.encode(e.model_copy(update={"envelope": env})), kind)
    return out


def messages(n: int = FULL, seed: int = SEED) -> list[Message]:
    """The messages of :func:`stream`."""
    return stream(n, seed).messages


# -- the facts -------------------------------------------------------------------------------------------

CATEGORIES = ("deliveries", "deadletters", "audit", "lagesbild", "alerts", "increments", "lagesbild_state",
              "state")  # fmt: skip


def _sha(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def _line(fact: Mapping[str, Any]) -> str:
    return json.dumps(fact, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def facts(outputs: Iterable[Any], state: Mapping[str, Mapping[str, Any]] | None = None) -> Facts:
    """A run's outputs as timestamp-free facts per category.

    ``outputs``: :class:`Output`\\ s (and the batch path's state records: anything with ``topic``, ``key``
    and ``value``). ``state``: the final contents of the :data:`STATE_TOPICS` tables when the run kept them
    in plain dicts (the oracle); else they are the last value per key of the outputs' changelog records."""
    serde, topics = Serde(), Topics()
    names: dict[bytes, str] = {}

    def schema(value: bytes) -> str:
        fp = value[len(MAGIC) : len(MAGIC) + 8]
        if fp not in names:
            sv = serde.registry.by_fingerprint(fp)
            names[fp] = sv.name if sv is not None else "?"
        return names[fp]

    out: Facts = {c: [] for c in CATEGORIES}
    audit: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
    aggregates: dict[tuple[str, bytes | None], bytes] = {}
    changelog: dict[str, dict[str, Any]] = {t: {} for t in STATE_TOPICS}
    counted: collections.Counter[tuple[Any, ...]] = collections.Counter()
    lagesbild_state: dict[str, Any] = {}
    for o in outputs:
        topic, value = o.topic, o.value
        if topic in changelog:
            changelog[topic][json.loads(o.key)] = None if value is None else json.loads(value)
        elif topic == topics.lagesbild:
            inc = json.loads(value)
            counted[(*(inc.get(f) for f in INCREMENT_FIELDS), bool(inc.get("county_copy")))] += inc.get("n", 1)
        elif topic == topics.lagesbild_state:
            lagesbild_state[json.loads(o.key)] = None if value is None else json.loads(value)
        elif topic == topics.audit:
            r = serde.decode(value)
            assert isinstance(r, AuditRecord)
            audit[o.partition].append({
                "partition": o.partition, "seq": r.seq, "event_id": r.event_id, "receiver": r.receiver,
                "legal_basis": r.legal_basis, "decision": r.decision.value, "reason": r.reason,
                "fields_disclosed": list(r.fields_disclosed), "source_unit": r.source_unit,
                "credential": r.credential,
            })  # fmt: skip
        elif topic == topics.deadletter:
            d = serde.decode(value)
            assert isinstance(d, Deadletter)
            out["deadletters"].append({
                "reason": d.reason.value, "source_topic": d.source_topic, "source_partition": d.source_partition,
                "source_offset": d.source_offset, "event_id": d.event_id, "original_sha256": _sha(d.original),
            })  # fmt: skip
        elif schema(value) == Delivery.SCHEMA_NAME:
            r = serde.decode(value)
            assert isinstance(r, Delivery)
            out["deliveries"].append({
                "topic": topic, "receiver": r.receiver, "municipality_code": r.municipality_code,
                "legal_basis": r.legal_basis, "event_id": r.event_id, "event_type": r.event_type,
                "person_ref": r.person_ref, "personnummer": r.personnummer, "fields": dict(r.fields),
                "occurred_at": r.occurred_at.isoformat(),
            })  # fmt: skip
        elif schema(value) == LagesbildAggregate.SCHEMA_NAME:
            aggregates[(topic, o.key)] = value  # the figure a receiver holds: the last one per key
        elif schema(value) == AreaAlert.SCHEMA_NAME:
            a = serde.decode(value)
            assert isinstance(a, AreaAlert)
            out["alerts"].append({
                "topic": topic, "alert_id": a.alert_id, "municipality_code": a.municipality_code, "area": a.area,
                "category": a.category, "count_7d": a.count_7d, "trailing_weekly_mean": a.trailing_weekly_mean,
                "period_start": a.period_start.isoformat(), "period_end": a.period_end.isoformat(),
            })  # fmt: skip
        else:
            raise AssertionError(f"an output not accounted for: {topic} {schema(value)}")
    for (topic, key), value in aggregates.items():
        a = serde.decode(value)
        assert isinstance(a, LagesbildAggregate)
        out["lagesbild"].append({
            "topic": topic, "key": (key or b"").decode(), "municipality_code": a.municipality_code, "area": a.area,
            "category": a.category, "period_kind": a.period_kind.value, "period": a.period, "count": a.count,
            "suppressed": a.suppressed,
        })  # fmt: skip
    # The increments as the events they count (one per event and receiver, or coalesced with a count n),
    # and the stage's state as the count per aggregate key (one record per counted event, or per key).
    out["increments"] = [{**dict(zip(INCREMENT_FIELDS, k[:-1], strict=True)), "county_copy": k[-1], "n": n}
                         for k, n in counted.items()]  # fmt: skip
    state_counts: collections.Counter[str] = collections.Counter()
    for k, v in lagesbild_state.items():
        if isinstance(v, list):
            state_counts.update(v)
        elif v is not None:
            state_counts[k] += v
    out["lagesbild_state"] = [{"key": k, "count": n} for k, n in state_counts.items()]
    for p in sorted(audit):  # in order per partition
        out["audit"] += audit[p]
    final = state if state is not None else changelog
    for name in STATE_TOPICS:
        for k, value in final.get(name, {}).items():
            if value is not None:
                if name == "hub.dedup":  # (first seen at, [topic, partition, offset]): the time is the clock's
                    value = list(value[1])
                out["state"].append({"topic": name, "key": k, "value": value})
    return out


def tables(f: Mapping[str, list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    """Small count tables of the facts, to show where two runs differ."""

    def count(category: str, label: Any) -> dict[str, int]:
        return dict(sorted(collections.Counter(label(x) for x in f[category]).items()))

    increments: collections.Counter[str] = collections.Counter()
    for i in f["increments"]:
        increments[f"{i['receiver']}.{i['municipality_code']}"] += i["n"]
    figures: collections.Counter[str] = collections.Counter()
    for a in f["lagesbild"]:
        figures[a["topic"]] += a["count"] or 0
    return {
        "deliveries_per_receiver": count("deliveries", lambda d: d["topic"]),
        "deadletters_per_reason": count("deadletters", lambda d: d["reason"]),
        "deadletters_per_source": count("deadletters", lambda d: f"{d['source_topic']}/{d['source_partition']}"),
        "audit_per_decision": count("audit", lambda a: f"{a['receiver']}/{a['decision']}"),
        "audit_refusal_reasons": count("audit", lambda a: a["reason"] or "-"),
        "audit_per_partition": count("audit", lambda a: str(a["partition"])),
        "lagesbild_aggregates_per_topic": count("lagesbild", lambda a: a["topic"]),
        "lagesbild_shown_total_per_topic": dict(sorted(figures.items())),
        "alerts_per_topic": count("alerts", lambda a: a["topic"]),
        "increments_per_receiver": dict(sorted(increments.items())),
        "state_per_topic": count("state", lambda s: s["topic"]),
    }


def lines(f: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """The canonical JSON lines per category: sorted, but the audit records in order per partition."""
    return {c: [_line(x) for x in xs] if c == "audit" else sorted(_line(x) for x in xs) for c, xs in f.items()}


def compact(f: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "categories": {c: {"count": len(ls), "sha256": _sha("\n".join(ls).encode())} for c, ls in lines(f).items()},
        "tables": tables(f),
    }


def canonical(outputs: Iterable[Any], state: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A run's outputs as the golden holds them: per category a count and a SHA-256 over the canonical JSON
    lines, and the count tables."""
    return compact(facts(outputs, state))


# -- the oracle ------------------------------------------------------------------------------------------


def run_oracle(msgs: list[Message]) -> tuple[list[Output], dict[str, dict[str, Any]]]:
    """The per-message walk of commit 0e1e820, as bench/bench_pipeline.py does it: every agency message
    through :meth:`Pipeline.process`, then every increment (and each county copy it makes, re-queued)
    through :meth:`LagesbildStage.process`. Returns the outputs and the final state tables."""
    settings = hub_settings()
    serde, topics = Serde(), Topics()
    consents: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    alerts: dict[str, bool] = {}
    pipeline = Pipeline(Router(load_rules(settings.rules_path), settings.county_code), serde, Pseudonymiser(settings),
                        seen=seen, consents=consents, chain=AuditChain(),
                        dedup_window_s=settings.dedup_window_hours * 3600, topics=topics)  # fmt: skip
    stage = LagesbildStage(serde, topics, settings.county_code, wave_rule(settings), alerts)
    counts = Counts()
    outputs: list[Output] = []
    queue: list[bytes] = []
    for m in msgs:
        if m.topic == topics.lagesbild:
            assert m.value is not None
            produced = stage.process(counts, m.value, m.partition, m.offset)
        else:
            produced = pipeline.process(m).outputs
        outputs += produced
        queue += [o.value for o in produced if o.topic == topics.lagesbild]
    while queue:  # as the worker does, county copies included (they come back round through hub.lagesbild)
        produced = stage.process(counts, queue.pop(), 0)
        outputs += produced
        queue += [o.value for o in produced if o.topic == topics.lagesbild]
    return outputs, {"hub.consent": consents, "hub.dedup": seen, "hub.lagesbild-alerts": alerts}


def golden_of(s: Stream, f: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"messages": len(s.messages), "bad_input": s.kinds(), **compact(f)}


def _check_tree() -> Path:
    """The tree the hub's code is imported from, checked to be one tree for every module."""
    import hub

    root = Path(hub.__file__).resolve().parents[1]
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.split(".")[0] in {"hub", "connectors", "tests"} and path:
            assert Path(path).resolve().is_relative_to(root), f"{name} from {path}, not {root}"
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN}")
    parser.add_argument("--dump", type=Path, help="write every category's canonical lines into this folder")
    args = parser.parse_args()
    golden: dict[str, Any] = {
        "about": "tests/hub/golden_batch.py: the per-message outputs (commit 0e1e820) of the seeded streams, "
                 "reduced to timestamp-free facts; see that module",
        "seed": SEED, "partitions": PARTITIONS,
    }  # fmt: skip
    for name, n in (("full", FULL), ("subset", SUBSET)):
        s = stream(n)
        outputs, state = run_oracle(s.messages)
        f = facts(outputs, state)
        golden[name] = {"events": n, **golden_of(s, f)}
        print(name, json.dumps(golden[name]["categories"]))
        if args.dump:
            folder = args.dump / name
            folder.mkdir(parents=True, exist_ok=True)
            for c, ls in lines(f).items():
                (folder / f"{c}.jsonl").write_text("".join(x + "\n" for x in ls))
    root = _check_tree()
    print(f"the hub's code came from {root}")
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, ensure_ascii=False, sort_keys=False) + "\n")
        print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
