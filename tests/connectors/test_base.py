"""The connector base against the real broker: checkpoint on restart, SIGTERM, retries, acknowledgement order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Connector, event_topic, make_producer
from hub import identity
from hub.contract.envelope import Envelope, Event, Subject
from hub.contract.events import ExtremismConcern, ExtremismConcernPayload, YouthActivity, YouthActivityPayload
from hub.contract.serde import Serde
from hub.kafka import clients
from hub.kafka.admin import TopicSpec, ensure_topics
from hub.kafka.local import free_port
from hub.kafka.provision import apply_acls
from hub.pseudonym import Pseudonymiser
from hub.settings import HubSettings
from hub.topics import Topics
from tests.kafka_env import access

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 8, 14, 12, 0, tzinfo=UTC)


def event_id(run: str, i: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{i}")


def make_event(run: str, i: int) -> Event:
    """Every third event is a police event about a person; the others municipal aggregates."""
    if i % 3 == 0:
        return ExtremismConcern(
            envelope=Envelope(
                event_id=event_id(run, i), event_type="polisen.extremism_concern", schema_version=1,
                source_agency="polisen", source_unit="test", municipality_code="1380",  # type: ignore[arg-type]
                occurred_at=NOW, recorded_at=NOW, subject=Subject(personnummer="19121212-1212"),
                data_class="personal_statutory",  # type: ignore[arg-type]
            ),
            payload=ExtremismConcernPayload(case_id=f"c-{i}", concern_kind="online", description="x",
                                            risk_level="low"),  # type: ignore[arg-type]
        )  # fmt: skip
    return YouthActivity(
        envelope=Envelope(
            event_id=event_id(run, i), event_type="kommun.youth_activity", schema_version=1,
            source_agency="kommun", source_unit="test", municipality_code="1381",  # type: ignore[arg-type]
            occurred_at=NOW, recorded_at=NOW, data_class="aggregated",  # type: ignore[arg-type]
        ),
        payload=YouthActivityPayload(activity_id=f"a-{i}", activity_kind="drop_in", participants=3,
                                     participants_13_17=1, participants_18_24=1),
    )  # fmt: skip


class Counting(Connector):
    """Yields events 0..n-1, resuming from ``checkpoint["next"]``."""

    def __init__(self, settings: HubSettings, run_id: str, n: int, *, stop_after: int | None = None,
                 delay_s: float = 0.0, **kw: Any) -> None:  # fmt: skip
        super().__init__(settings, name="counting", **kw)
        self.run_id, self.n, self.stop_after, self.delay_s = run_id, n, stop_after, delay_s

    async def run(self) -> AsyncIterator[Event]:
        for i in range(self.checkpoint.get("next", 0), self.n):
            if self.stopping:
                return
            self.checkpoint["next"] = i + 1
            yield make_event(self.run_id, i)
            if self.stop_after is not None and i + 1 >= self.stop_after:
                self.request_stop()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)


class Pushing(Connector):
    """The other style: run() calls produce() itself."""

    def __init__(self, settings: HubSettings, run_id: str, n: int) -> None:
        super().__init__(settings, name="pushing")
        self.run_id, self.n = run_id, n

    async def run(self) -> None:
        for i in range(self.checkpoint.get("next", 0), self.n):
            self.checkpoint["next"] = i + 1
            await self.produce(make_event(self.run_id, i))


def settings_for(bootstrap: str, state: Path, namespace: str) -> HubSettings:
    return HubSettings(kafka_bootstrap=bootstrap, state_dir=state, topic_namespace=f"{namespace}.")


def source_topics(namespace: str) -> list[str]:
    """The two agency topics :func:`make_event` publishes to: Laholm's (1381) and the police's."""
    topics = Topics(f"{namespace}.")
    return [topics.agency("kommun", "1381"), topics.agency("polisen")]


def provisioned(bootstrap: str, state: Path, namespace: str) -> HubSettings:
    """:func:`settings_for`, with the agency topics created and the namespace's ACLs applied (the broker creates
    no topic by itself, and a connector's principal may write only what the ACLs allow)."""
    settings = settings_for(bootstrap, state, namespace)
    admin = access(bootstrap)
    asyncio.run(ensure_topics(admin, [TopicSpec(t, settings.topic_partitions) for t in source_topics(namespace)]))
    apply_acls(admin, settings)
    return settings


async def read_all(bootstrap: str, namespace: str, expect: int) -> list[tuple[str, bytes, Event]]:
    consumer = clients.consumer(access(bootstrap), *source_topics(namespace), auto_offset_reset="earliest")
    serde = Serde()
    got: list[tuple[str, bytes, Event]] = []
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while len(got) < expect:
                for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                    for m in messages:
                        ev = serde.decode(m.value)
                        assert isinstance(ev, Event)
                        got.append((tp.topic, m.key, ev))
        for messages in (await consumer.getmany(timeout_ms=1500)).values():
            got.extend((m.topic, m.key, serde.decode(m.value)) for m in messages)  # type: ignore[misc]
    finally:
        await consumer.stop()
    return got


def assert_exactly_once(got: list[tuple[str, bytes, Event]], run_id: str, n: int, namespace: str,
                        settings: HubSettings) -> None:  # fmt: skip
    ids = [e.envelope.event_id for _, _, e in got]
    assert len(ids) == len(set(ids)), "an event was published twice"
    assert set(ids) == {event_id(run_id, i) for i in range(n)}, "an event was lost"
    person_key = Pseudonymiser(settings).person_key("191212121212").encode()
    for topic, key, e in got:
        assert topic == event_topic(e, Topics(f"{namespace}."))
        assert key == (person_key if e.envelope.subject else e.envelope.municipality_code.encode())


@pytest.mark.kafka
def test_restart_midway_neither_loses_nor_republishes(kafka_bootstrap: str, tmp_path: Path,
                                                      unique: Callable[[str], str]) -> None:  # fmt: skip
    ns, run_id, n = unique("cb"), unique("run"), 90
    settings = provisioned(kafka_bootstrap, tmp_path, ns)
    first = Counting(settings, run_id, n, stop_after=37, max_in_flight=8)
    progress = asyncio.run(first.execute(handle_signals=False))
    assert progress["produced"] == 37
    assert progress["in_flight"] == 0
    assert json.loads(first.checkpoint_path.read_text()) == {"next": 37}
    assert first.checkpoint_path == tmp_path / "connectors" / "counting.json"

    second = Counting(settings, run_id, n)
    assert second.checkpoint == {"next": 37}
    assert asyncio.run(second.execute(handle_signals=False))["produced"] == n - 37
    assert json.loads(second.checkpoint_path.read_text()) == {"next": n}

    got = asyncio.run(read_all(kafka_bootstrap, ns, n))
    assert_exactly_once(got, run_id, n, ns, settings)
    # Per key order: the municipal events of one municipality arrive in the order produced.
    kommun = [int(e.payload.activity_id[2:]) for t, _, e in got if isinstance(e, YouthActivity)]
    assert kommun == sorted(kommun)


@pytest.mark.kafka
def test_push_style_connector(kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    ns, run_id = unique("cb"), unique("run")
    settings = provisioned(kafka_bootstrap, tmp_path, ns)
    assert asyncio.run(Pushing(settings, run_id, 12).execute(handle_signals=False))["produced"] == 12
    assert asyncio.run(Pushing(settings, run_id, 12).execute(handle_signals=False))["produced"] == 0
    assert_exactly_once(asyncio.run(read_all(kafka_bootstrap, ns, 12)), run_id, 12, ns, settings)


@pytest.mark.kafka
def test_sigterm_finishes_in_flight_and_saves_checkpoint(kafka_bootstrap: str, tmp_path: Path,
                                                         unique: Callable[[str], str]) -> None:  # fmt: skip
    ns, run_id, n = unique("cb"), unique("run"), 300
    settings = provisioned(kafka_bootstrap, tmp_path, ns)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.connectors.test_base", kafka_bootstrap, str(tmp_path), ns, run_id, str(n)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    checkpoint = tmp_path / "connectors" / "counting.json"
    try:
        deadline = time.monotonic() + 60
        while not (checkpoint.exists() and json.loads(checkpoint.read_text()).get("next", 0) >= 20):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the connector made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    stopped_at = json.loads(checkpoint.read_text())["next"]
    assert 20 <= stopped_at < n
    assert summary["produced"] == stopped_at  # everything produced was acknowledged and checkpointed
    assert summary["in_flight"] == 0

    rest = asyncio.run(Counting(settings, run_id, n).execute(handle_signals=False))
    assert rest["produced"] == n - stopped_at
    assert_exactly_once(asyncio.run(read_all(kafka_bootstrap, ns, n)), run_id, n, ns, settings)


@pytest.mark.kafka
def test_start_retries_while_kafka_is_unreachable(kafka_bootstrap: str, tmp_path: Path,
                                                  unique: Callable[[str], str]) -> None:  # fmt: skip
    ns, run_id = unique("cb"), unique("run")
    settings = provisioned(kafka_bootstrap, tmp_path, ns)
    dead = f"127.0.0.1:{free_port()}"
    attempts: list[str] = []

    def factory() -> Any:
        target = dead if len(attempts) < 2 else kafka_bootstrap
        attempts.append(target)
        return make_producer(access(target, identity.SIMULATOR), request_timeout_ms=2000)

    connector = Counting(settings, run_id, 5, producer_factory=factory, backoff_initial_s=0.05)
    progress = asyncio.run(connector.execute(handle_signals=False))
    assert attempts == [dead, dead, kafka_bootstrap]
    assert progress["retries"] == 2
    assert progress["produced"] == 5
    assert_exactly_once(asyncio.run(read_all(kafka_bootstrap, ns, 5)), run_id, 5, ns, settings)


class ManualProducer:
    """Futures the test resolves by hand, to check the checkpoint follows acknowledgements."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[None]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut


def test_checkpoint_only_covers_acknowledged_prefix(tmp_path: Path) -> None:
    settings = HubSettings(kafka_bootstrap="127.0.0.1:1", state_dir=tmp_path)
    producer = ManualProducer()

    async def scenario() -> None:
        c = Counting(settings, "manual", 3, producer_factory=lambda: producer, checkpoint_every=1)
        await c.start()
        for i in range(3):
            c.checkpoint["next"] = i + 1
            await c.produce(make_event("manual", i))
        producer.futures[1].set_result(None)
        producer.futures[2].set_result(None)
        await asyncio.sleep(0.01)
        assert c.durable_checkpoint == {}  # event 0 is not acknowledged yet
        producer.futures[0].set_result(None)
        await asyncio.sleep(0.01)
        assert c.durable_checkpoint == {"next": 3}
        assert json.loads(c.checkpoint_path.read_text()) == {"next": 3}
        assert c.progress()["produced"] == 3
        await c.stop()

    asyncio.run(scenario())


def test_backpressure_waits_when_in_flight_is_full(tmp_path: Path) -> None:
    settings = HubSettings(kafka_bootstrap="127.0.0.1:1", state_dir=tmp_path)
    producer = ManualProducer()

    async def scenario() -> None:
        c = Counting(settings, "bp", 5, producer_factory=lambda: producer, max_in_flight=2)
        await c.start()
        await c.produce(make_event("bp", 0))
        await c.produce(make_event("bp", 1))
        third = asyncio.create_task(c.produce(make_event("bp", 2)))
        await asyncio.sleep(0.05)
        assert not third.done()
        assert len(producer.futures) == 2
        producer.futures[0].set_result(None)
        await asyncio.wait_for(third, 1)
        assert len(producer.futures) == 3
        for f in producer.futures[1:]:
            f.set_result(None)
        await c.stop()
        assert c.progress()["produced"] == 3

    asyncio.run(scenario())


def _subprocess_main(argv: list[str]) -> None:
    bootstrap, state, ns, run_id, n = argv
    settings = settings_for(bootstrap, Path(state), ns)
    connector = Counting(settings, run_id, int(n), delay_s=0.02, checkpoint_interval_s=0.05)
    print(json.dumps(connector.run_sync()), flush=True)


if __name__ == "__main__":
    _subprocess_main(sys.argv[1:])
