"""Helpers for the fault-injection tests: background work whose failure fails the test, and agency
clients posting to the ingest gateway the way a well-behaved agency system does."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from connectors.gateway.auth import hash_token
from hub.contract.envelope import Event
from hub.deadline import Deadline
from hub.identity import PER_MUNICIPALITY, SourceUnit, source_units
from hub.kafka.local import LocalBroker
from hub.settings import HubSettings
from tests.hub.support import HubUnderTest


class Background:
    """Run ``target(*args)`` in a thread; :meth:`join` re-raises what it raised."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        self.error: BaseException | None = None
        self.result: Any = None

        def run() -> None:
            try:
                self.result = target(*args)
            except BaseException as exc:  # handed to the test thread by join()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout_s: float) -> Any:
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise TimeoutError(f"background work still running after {timeout_s:g} s")
        if self.error is not None:
            raise self.error
        return self.result


def kill_points(rng: random.Random, n: int, kills: int) -> list[int]:
    """One random point in each of ``kills`` equal slices of the middle 80 % of the stream."""
    width = 0.8 / kills
    return [int(n * rng.uniform(0.1 + i * width, 0.1 + (i + 1) * width)) for i in range(kills)]


# -- agency clients of the ingest gateway ----------------------------------------------------------

CLIENTS = 4
MAX_BATCH = 500
"""Batches of 1 to this many events: a large one is partly in Kafka while the rest is still sent, which
is when a killed gateway leaves a client without an answer for events Kafka has (the client re-sends them)."""
TOKENS = {u.name: f"{u.name}-fault-test-token" for u in source_units(HubSettings().municipality_codes)}
"""One gateway token per source unit (``polisen``, ``kriminalvarden``, ``kommun-1381``, ...)."""


def unit_of(event: Event) -> str:
    """The source unit that sends ``event``: its agency, or for a municipality's event ``kommun-<code>``."""
    agency = event.envelope.source_agency.value
    return SourceUnit(agency, event.envelope.municipality_code if agency in PER_MUNICIPALITY else None).name


@dataclass
class Posting:
    """What the clients were told: acknowledged event ids, and how often they had to retry."""

    acknowledged: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)
    """"202", "503", "429", "connection" (refused, reset, or no complete answer)."""


def batches(events: list[Event], rng: random.Random) -> list[tuple[str, list[tuple[str, str]]]]:
    """(source unit, [(event id, JSON line)]) batches of one source unit each (each posts with its own
    token), random sizes, units interleaved."""
    per_unit: dict[str, list[tuple[str, str]]] = {}
    for e in events:
        line = json.dumps(e.model_dump(mode="json"))
        per_unit.setdefault(unit_of(e), []).append((str(e.envelope.event_id), line))
    chunks = []
    for unit, lines in per_unit.items():
        while lines:
            size = rng.randint(1, MAX_BATCH)
            chunks.append((unit, lines[:size]))
            lines = lines[size:]
    rng.shuffle(chunks)
    return chunks


@dataclass
class Hold:
    """Keep the last ``batches`` work items back until ``release`` is set, so that the clients cannot
    finish before the test has done what it must do while they are still posting."""

    batches: int
    release: threading.Event = field(default_factory=threading.Event)


def held_for(work: list[tuple[str, list[tuple[str, str]]]], fraction: float) -> Hold:
    """A :class:`Hold` of the fewest last batches of ``work`` that carry at least ``fraction`` of its events."""
    total = sum(len(lines) for _unit, lines in work)
    held = carried = 0
    while held < len(work) and carried < fraction * total:
        held += 1
        carried += len(work[-held][1])
    return Hold(held)


async def post_all(url: str, work: list[tuple[str, list[tuple[str, str]]]], posting: Posting,
                   spread_s: float = 0.0, hold: Hold | None = None) -> None:  # fmt: skip
    """``CLIENTS`` concurrent senders that retry until every event of theirs is acknowledged (202).

    Like a well-behaved agency system: on a connection error, a 503 or a 429 it waits and sends again
    what was not acknowledged (the same event ids); any other answer is a test failure. With
    ``spread_s`` the batches are started evenly over that many seconds (steady traffic) instead of at once.
    With ``hold`` the last batches wait for its release (a client waiting there is still running).
    """
    queue: asyncio.Queue[tuple[int, tuple[str, list[tuple[str, str]]]]] = asyncio.Queue()
    for item in enumerate(work):
        queue.put_nowait(item)
    began = asyncio.get_running_loop().time()

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            index, (unit, pending) = queue.get_nowait()
            if hold is not None and index >= len(work) - hold.batches:
                await asyncio.to_thread(hold.release.wait)
            if spread_s:  # pacing, not synchronisation
                await asyncio.sleep(max(0.0, began + spread_s * index / len(work) - asyncio.get_running_loop().time()))
            attempt = 0
            while pending:
                headers = {"Authorization": f"Bearer {TOKENS[unit]}", "Content-Type": "application/x-ndjson"}
                body = "\n".join(line for _id, line in pending) + "\n"
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        status, answer = r.status, await r.json()
                except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
                    posting.outcomes["connection"] += 1
                    status, answer = 0, None
                if status in (202, 503) and answer is not None:
                    posting.outcomes[str(status)] += 1
                    # A 503 names the lines Kafka did not acknowledge in time, or (not connected yet) none.
                    accepted = {a["event_id"] for a in answer.get("accepted", [])}
                    rejected = answer.get("rejected", [])
                    assert all(r["status"] == 503 for r in rejected), rejected[:3]
                    posting.acknowledged |= accepted
                    pending = [(i, line) for i, line in pending if i not in accepted]
                elif status == 429:
                    posting.outcomes["429"] += 1
                elif status != 0:
                    raise AssertionError(f"gateway answered {status}: {answer}")
                if pending:
                    attempt += 1
                    await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))  # backoff

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))


def start_gateway_process(hub: HubUnderTest, name: str, port: int) -> subprocess.Popen[bytes]:
    """``hub ingest`` on ``port`` with :data:`TOKENS`, once its /ready answers 200."""
    env = {"HUB_INGEST__TOKENS": json.dumps({a: [hash_token(t)] for a, t in TOKENS.items()})}
    proc = hub.start_cli(name, "ingest", "--host", "127.0.0.1", "--port", str(port), env=env)

    def ready() -> bool:
        assert proc.poll() is None, f"{name} exited:\n{hub.log(name)}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    Deadline(120, f"{name} to be ready").wait_for(ready, interval=0.2)
    return proc


def broker_batches(broker: LocalBroker, topic: str, partition: int, offsets: list[int], span: int = 40) -> str:
    """The record batches of one partition around ``offsets``, as the broker's own log holds them: producer
    id and epoch, transactional or not, control markers (a commit or abort). What a duplicated delivery's
    failure prints, so a run shows how its copies came to be committed (Kafka's ``DumpLogSegments``)."""
    folder = broker.data_dir / f"{topic}-{partition}"
    segments = sorted(str(f) for f in folder.glob("*.log"))
    if not segments:
        return f"(no log segments in {folder})"
    # With the records' data only for the markers' type: a record line (its payload) is never kept.
    dump = ["java", "-Xmx256m", "-cp", broker.classpath(), "org.apache.kafka.tools.DumpLogSegments",
            "--print-data-log", "--files", ",".join(segments)]  # fmt: skip
    done = subprocess.run(dump, capture_output=True, timeout=300, check=False)
    low, high = min(offsets) - span, max(offsets) + span
    kept = ("baseOffset", "lastOffset", "producerId", "producerEpoch", "isTransactional", "isControl")
    lines: list[str] = []
    inside = False
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        words = line.split()
        if words and words[0] == "baseOffset:":
            fields = dict(zip(words[0::2], words[1::2], strict=False))
            inside = low <= int(fields.get("lastOffset:", "-1")) and int(fields.get("baseOffset:", "0")) <= high
            if inside:
                lines.append(" ".join(f"{k} {fields.get(k + ':', '?')}" for k in kept))
        elif inside and "endTxnMarker:" in words:
            lines[-1] += f" marker {words[words.index('endTxnMarker:') + 1]}"
    return f"{topic}-{partition}, batches around offsets {offsets}:\n" + "\n".join(lines)
