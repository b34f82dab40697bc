"""``hub demo``: the whole hub on this machine, fed with real and simulated events, on one screen.

Starts (or reuses) the local Apache Kafka broker, creates the topics, starts ``hub worker``,
``hub ingest`` and ``hub web`` (with demo users and generated passwords, printed with the URL) as child
processes, replays the 300 real police events from ``../shared/data`` through
the police open-feed connector (served by a local HTTP server standing in for polisen.se), and posts
simulated traffic from every agency through the authenticated ingest gateway. Every two seconds it prints
events in, deliveries per receiver, refusals and dead letters (from the worker's /metrics) and the latest
deliveries as a coordinator sees them. Ctrl-C, or ``--duration``, stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from connectors.gateway.auth import hash_token
from connectors.polisen_feed.connector import PolisenFeedConnector
from connectors.simulator.generate import Simulator, replay_start
from hub import identity
from hub.contract.errors import ContractError
from hub.contract.outputs import Delivery
from hub.contract.serde import Serde
from hub.deadline import Deadline
from hub.identity import PER_MUNICIPALITY, SourceUnit, source_units
from hub.kafka import clients
from hub.kafka.admin import ensure_topics, hub_topics
from hub.kafka.clients import KafkaAccess
from hub.kafka.cluster import local_kafka
from hub.kafka.local import free_port
from hub.kafka.provision import apply_acls
from hub.rules.receivers import RECEIVERS
from hub.settings import HubSettings
from hub.tail import readable
from hub.topics import Topics
from hub.web.auth import COOKIE_NAME, new_user_entry

DEMO_USERS = {
    "laholm-sig": ("coordinator", "sig", "1381"),
    "halmstad-socialtjanst": ("coordinator", "socialtjanst", "1380"),
    "laholm-lagesbild": ("coordinator", "lagesbild", "1381"),
    "lansstyrelsen": ("coordinator", "lagesbild", "13"),
    "drift": ("operator", None, None),
}
"""The web app's demo users: a Laholm SIG coordinator, Halmstad's social services, Laholm's samverkan meeting,
Länsstyrelsen (the county lägesbild) and an operator."""


class Demo:
    def __init__(self, settings: HubSettings, duration_s: float | None, rate: float, seed: int) -> None:
        self.settings = settings
        self.duration_s = duration_s
        self.rate = rate
        self.seed = seed
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started_broker = False
        self.bootstrap = ""
        self.worker_port = free_port()
        self.ingest_port = free_port()
        self.web_port = free_port()
        self.web_logins = {name: new_user_entry(role, receiver, code)
                           for name, (role, receiver, code) in DEMO_USERS.items()}  # fmt: skip
        # One gateway token per source unit: each municipality posts with its own credential.
        self.tokens = {u.name: secrets.token_urlsafe(24) for u in source_units(settings.municipality_codes)}
        self.logs = settings.state_dir / "demo"
        self.stop = asyncio.Event()
        self.recent: deque[str] = deque(maxlen=8)
        self.sent: Counter[str] = Counter()
        self.police_replayed = 0
        self.notes: list[str] = []

    # -- processes -----------------------------------------------------------------------------------

    def kafka(self, principal: str) -> KafkaAccess:
        return clients.access_as(self.settings, principal, bootstrap=self.bootstrap)

    def start_kafka(self) -> None:
        if self.settings.kafka_bootstrap:
            self.bootstrap = self.settings.kafka_bootstrap
            return
        broker = local_kafka(self.settings)
        self.started_broker = broker.pid() is None
        print(f"starting Apache Kafka {broker.version} ..." if self.started_broker else "using the running broker")
        self.bootstrap = broker.up()

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HUB_ENV="dev",
            HUB_KAFKA_BOOTSTRAP=self.bootstrap,
            HUB_WORKER__WEB_PORT=str(self.worker_port),
            HUB_INGEST__PORT=str(self.ingest_port),
            HUB_INGEST__TOKENS=json.dumps({a: [hash_token(t)] for a, t in self.tokens.items()}),
            HUB_WEB__PORT=str(self.web_port),
            HUB_WEB__USERS=json.dumps({name: entry for name, (_pw, entry) in self.web_logins.items()}),
            HUB_WEB__SESSION_SECRET=secrets.token_urlsafe(32),
            HUB_WEB__WORKER_METRICS_URL=f"http://127.0.0.1:{self.worker_port}/metrics",
        )
        return env

    def spawn(self, name: str, *args: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", *args], env=self.child_env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    async def wait_ready(self, name: str, url: str, timeout_s: float = 120) -> None:
        async def ready() -> bool:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited (code {proc.returncode}); see {self.logs / (name + '.log')}")
            try:
                async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    return r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await Deadline(timeout_s, f"{name} to be ready").async_wait_for(ready, interval=0.5)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.started_broker:
            local_kafka(self.settings).down()

    # -- feeds ---------------------------------------------------------------------------------------

    async def replay_police_feed(self) -> None:
        sample = self.settings.shared_data_dir / "polisen-events-sample.json"
        if not sample.exists():
            self.notes.append(f"no real police data at {sample}: police replay skipped")
            return
        body = sample.read_bytes()

        async def events(_: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        app = web.Application()
        app.router.add_get("/api/events", events)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            settings = self.settings.model_copy(update={"kafka_bootstrap": self.bootstrap})
            connector = PolisenFeedConnector(settings, base_url=f"http://127.0.0.1:{port}", polls=1,
                                             min_interval_s=0.0)  # fmt: skip
            progress = await connector.execute(handle_signals=False)
            self.police_replayed = int(progress.get("produced", 0))
            known = len(connector.checkpoint.get("published_ids", []))
            if known > self.police_replayed:
                self.notes.append(f"{known - self.police_replayed} police notices were published by an earlier run "
                                  "(the connector's checkpoint) and are not sent twice")
        finally:
            await runner.cleanup()

    async def simulate(self) -> None:
        """Post simulated events through the ingest gateway, each agency with its own token."""
        sim = Simulator(self.seed, replay_start(datetime.now(UTC), self.rate, self.duration_s))
        url = f"http://127.0.0.1:{self.ingest_port}/v1/events"
        started = time.monotonic()
        batch: dict[str, list[str]] = {u: [] for u in self.tokens}
        async with aiohttp.ClientSession() as session:
            for i, event in enumerate(sim.events()):
                if self.stop.is_set():
                    break
                env = event.envelope
                unit = SourceUnit(env.source_agency.value, env.municipality_code
                                  if env.source_agency.value in PER_MUNICIPALITY else None).name
                batch[unit].append(event.model_dump_json())
                due = started + (i + 1) / self.rate
                if due - time.monotonic() > 0.2 or len(batch[unit]) >= 200:
                    await self._post(session, url, batch)
                    await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def _post(self, session: aiohttp.ClientSession, url: str, batch: dict[str, list[str]]) -> None:
        for agency, lines in batch.items():
            if not lines:
                continue
            headers = {"Authorization": f"Bearer {self.tokens[agency]}", "Content-Type": "application/x-ndjson"}
            async with session.post(url, data="\n".join(lines).encode(), headers=headers) as r:
                reply = await r.json()
                self.sent[agency] += len(reply.get("accepted", []))
            lines.clear()

    async def watch_deliveries(self) -> None:
        topics = Topics(self.settings.topic_namespace)
        codes = [*self.settings.municipality_codes, self.settings.county_code]
        names = [topics.deliver(r, c) for r in RECEIVERS for c in codes]
        consumer = clients.consumer(self.kafka(identity.OPERATOR), *names, auto_offset_reset="latest")
        serde = Serde()
        await consumer.start()
        try:
            while not self.stop.is_set():
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for m in messages:
                        with contextlib.suppress(ContractError):
                            record = serde.decode(m.value)
                            if isinstance(record, Delivery):
                                self.recent.append(readable(record, reveal=False)[:150])
        finally:
            await consumer.stop()

    # -- the web app ---------------------------------------------------------------------------------

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def web_lines(self) -> list[str]:
        lines = [f"  web app {self.web_url}/login  (users and generated passwords for this run):"]
        for name, (password, entry) in self.web_logins.items():
            scope = "operations" if entry["role"] == "operator" else f"{entry['receiver']} {entry['municipality']}"
            lines.append(f"    {name:<22} {password:<18} {scope}")
        return lines

    async def check_web(self) -> dict[str, Any]:
        """Log in as the Laholm SIG coordinator and open the inbox, as a person would."""
        name = "laholm-sig"
        password, _entry = self.web_logins[name]
        result: dict[str, Any] = {"url": self.web_url, "login": False, "inbox_status": None}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
                async with s.post(f"{self.web_url}/login", data={"username": name, "password": password},
                                  allow_redirects=False) as r:  # fmt: skip
                    cookie = r.cookies.get(COOKIE_NAME)
                    result["login"] = r.status == 303 and cookie is not None
                    home = r.headers.get("Location", "")
                if cookie is not None:
                    headers = {"Cookie": f"{COOKIE_NAME}={cookie.value}"}
                    async with s.get(f"{self.web_url}{home}", headers=headers, allow_redirects=False) as r:
                        result["inbox_status"] = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            result["error"] = type(exc).__name__
        return result

    # -- the screen ----------------------------------------------------------------------------------

    async def metrics(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        url = f"http://127.0.0.1:{self.worker_port}/metrics"
        try:
            async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                if r.status != 200:
                    return out
                text = await r.text()
        except (aiohttp.ClientError, TimeoutError):
            return out
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    label = labels.get("receiver") or labels.get("reason") or labels.get("topic") or ""
                    out.setdefault(sample.name, Counter())[label] += int(sample.value)
        return out

    def screen(self, m: dict[str, Counter[str]], elapsed: float) -> str:
        received = sum(m.get("hub_events_received_total", Counter()).values())
        delivered = m.get("hub_deliveries_total", Counter())
        aggregated = m.get("hub_aggregated_total", Counter())
        refused = m.get("hub_refusals_total", Counter())
        dead = m.get("hub_deadletters_total", Counter())
        lines = [
            f"Samverkan Hub demo — {elapsed:5.0f} s   (Ctrl-C stops everything)",
            f"  ingest  http://127.0.0.1:{self.ingest_port}/v1/events   worker metrics "
            f"http://127.0.0.1:{self.worker_port}/metrics   kafka {self.bootstrap}",
            *self.web_lines(),
            f"  sent: police feed {self.police_replayed} real notices, simulated "
            + ", ".join(f"{a} {n}" for a, n in sorted(self.sent.items())),
            f"  events in {received}   refused {sum(refused.values())}   dead letters {sum(dead.values())}"
            f"   counted into aggregates {sum(aggregated.values())}",
            "  delivered  " + "  ".join(f"{r} {delivered.get(r, 0)}" for r in RECEIVERS),
            "  latest deliveries (what coordinators see; personnummer masked):",
            *[f"    {line}" for line in self.recent],
            *[f"  note: {n}" for n in self.notes],
        ]
        return "\n".join(lines)

    async def run(self) -> dict[str, Any]:
        admin = self.kafka(identity.ADMIN)
        await ensure_topics(admin, hub_topics(self.settings))
        await asyncio.to_thread(apply_acls, admin, self.settings)
        self.spawn("worker", "worker", "--processes", "1")  # one process: the operator page reads its /metrics
        self.spawn("ingest", "ingest")
        self.spawn("web", "web")
        await self.wait_ready("worker", f"http://127.0.0.1:{self.worker_port}/ready")
        await self.wait_ready("ingest", f"http://127.0.0.1:{self.ingest_port}/ready")
        await self.wait_ready("web", f"{self.web_url}/ready")
        print("\n".join(self.web_lines()), flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        tasks = [asyncio.create_task(c) for c in (self.replay_police_feed(), self.simulate(), self.watch_deliveries())]
        started = time.monotonic()
        interactive = sys.stdout.isatty()
        last: dict[str, Counter[str]] = {}
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 2.0)
            elapsed = time.monotonic() - started
            last = await self.metrics() or last
            text = self.screen(last, elapsed)
            print(("\033[2J\033[H" if interactive else "\n") + text, flush=True)
            if self.duration_s is not None and elapsed >= self.duration_s:
                self.stop.set()
        await asyncio.sleep(3)  # let the worker finish what was sent
        last = await self.metrics() or last
        web_check = await self.check_web()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        delivered = last.get("hub_deliveries_total", Counter())
        return {
            "events_in": sum(last.get("hub_events_received_total", Counter()).values()),
            "delivered": dict(delivered),
            "aggregated": dict(last.get("hub_aggregated_total", Counter())),
            "refused": sum(last.get("hub_refusals_total", Counter()).values()),
            "deadletters": sum(last.get("hub_deadletters_total", Counter()).values()),
            "police_replayed": self.police_replayed,
            "simulated_sent": dict(self.sent),
            "web": web_check,
        }


def run_demo(settings: HubSettings, duration_s: float | None, rate: float, seed: int) -> int:
    demo = Demo(settings, duration_s, rate, seed)
    try:
        demo.start_kafka()
        summary = asyncio.run(demo.run())
    finally:
        demo.stop_all()
    print("demo summary: " + json.dumps(summary, ensure_ascii=False))
    print(f"logs: {demo.logs}")
    return 0 if summary["events_in"] else 1


__all__ = ["Demo", "run_demo"]
