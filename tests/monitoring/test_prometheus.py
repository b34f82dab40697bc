"""Monitoring that really scrapes: Debian's `prometheus` runs the project's deploy/prometheus/prometheus.yml
(targets rewritten to the local ports) against a live worker, gateway, web app and police-feed connector;
every target is up, the hub's metrics and every metric the Grafana dashboard queries are there, and the
alerting rules load and pass their `promtool test rules` tests."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.kafka.local import free_port
from tests import factories as f
from tests.faults.support import TOKENS, Posting, batches, post_all, start_gateway_process
from tests.hub.support import REPO, HubUnderTest, running_hub
from tests.test_compose import DASHBOARD, PROMETHEUS, metric_names_in
from tests.web.support import Client, WebUnderTest, make_users

pytestmark = pytest.mark.kafka

ALERTS = PROMETHEUS.parent / "alerts.yml"
DATA = REPO.parent / "shared" / "data" / "polisen-events-sample.json"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"Debian's prometheus package ({name}) is not installed (scripts/test.sh installs it)")
    return path


def test_the_alerting_rules_pass_their_promtool_tests() -> None:
    promtool = _tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=ALERTS.parent, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


class _Feed(BaseHTTPRequestHandler):
    """The police's events API as the connector calls it: ``/api/events`` with the real Halland sample."""

    body = b"[]"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def feed() -> Iterator[str]:
    if DATA.exists():
        _Feed.body = DATA.read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubUnderTest]:
    with running_hub(kafka_bootstrap, tmp_path_factory.mktemp("monitoring"), "mon",
                     {"HUB_WEB__HEALTH_CHECK_S": "2"}) as h:  # fmt: skip
        yield h


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own local Prometheus
        return json.loads(r.read())


def _post_rejected(url: str) -> None:
    """A line the gateway refuses (hub_ingest_events_rejected_total): a 4xx answer."""
    headers = {"Authorization": f"Bearer {TOKENS['polisen']}", "Content-Type": "application/x-ndjson"}
    request = urllib.request.Request(url, data=b'{"envelope": {}}\n', method="POST", headers=headers)  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - our own local gateway
    assert 400 <= refused.value.code < 500


def _local_config(ports: dict[str, int], tmp: Path) -> Path:
    """deploy/prometheus/prometheus.yml with each compose host:port target pointed at the local process."""
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(ALERTS)]
    for job in config["scrape_configs"]:
        hosts = [t.rsplit(":", 1)[0] for s in job.pop("static_configs", []) for t in s["targets"]]
        hosts += [n for d in job.pop("dns_sd_configs", []) for n in d["names"]]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[h]}" for h in hosts]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_prometheus_scrapes_every_service_and_finds_every_metric_the_dashboard_uses(
    hub: HubUnderTest, feed: str, tmp_path: Path
) -> None:
    prometheus = _tool("prometheus")
    ingest_port, web_port, feed_port, prom_port = (free_port() for _ in range(4))
    gateway = start_gateway_process(hub, "ingest", ingest_port)
    web = WebUnderTest(hub, make_users({"drift": {"role": "operator"}}), port=web_port)
    web.start()
    connector = hub.start_cli("polisen-feed", "connector", "polisen-feed", "--base-url", feed, "--interval", "10",
                              "--status-port", str(feed_port))  # fmt: skip
    ports = {"worker": hub.web_port, "ingest": ingest_port, "web": web_port, "polisen-feed": feed_port}
    try:
        # Traffic the dashboard's panels show: events through the gateway, a re-sent one, a bad one.
        events = [f.minor_suspected("1381"), f.release(home="1383"), f.incident_notice("theft", "1380"),
                  f.youth_activity("1315"), f.minor_suspected("1384")]  # fmt: skip
        posting = Posting()
        work = batches([*events, events[0]], random.Random(3))
        asyncio.run(post_all(f"http://127.0.0.1:{ingest_port}/v1/events", work, posting))
        hub.publish([b"not an event"], agency="polisen")
        _post_rejected(f"http://127.0.0.1:{ingest_port}/v1/events")
        # An operator opens the operations page: a recorded read (hub_accesses_recorded_total).
        operator = Client(web.url)
        operator.login(web.users["drift"])
        assert operator.request("/operator").status == 200

        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen([prometheus, f"--config.file={_local_config(ports, tmp_path)}",
                                 f"--storage.tsdb.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
        wanted = {n for p in dashboard["panels"] for t in p.get("targets", []) for n in metric_names_in(t["expr"])}
        wanted |= {"hub_audit_chain_intact", "hub_under_replicated_partitions", "hub_accesses_recorded_total"}
        if DATA.exists():  # the real Halland sample: the connector publishes it
            wanted.add("hub_connector_events_produced_total")
        wanted -= {"up"}

        def scraped() -> tuple[dict[str, str], set[str]]:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                targets = _get(f"{api}/targets")["data"]["activeTargets"]
                names = set(_get(f"{api}/label/__name__/values")["data"])
            except OSError:
                return {}, set()
            return {t["labels"]["job"]: t["health"] for t in targets}, names

        from hub.deadline import Deadline

        state: dict[str, Any] = {}

        def complete() -> bool:
            state["jobs"], state["names"] = scraped()
            return len(state["jobs"]) == 4 and all(h == "up" for h in state["jobs"].values()) \
                and wanted <= state["names"]  # fmt: skip

        try:
            Deadline(120, "every target up and every metric scraped").wait_for(complete, interval=1.0)
        except Exception:
            raise AssertionError(f"targets {state.get('jobs')}, missing metrics "
                                 f"{sorted(wanted - state.get('names', set()))}") from None
        assert set(state["jobs"]) == {"hub-worker", "hub-ingest", "hub-web", "hub-polisen-feed"}
        intact = _get(f"{api}/query?query=" + urllib.parse.quote("hub_audit_chain_intact"))["data"]["result"]
        assert [r["value"][1] for r in intact] == ["1"]
        rules = _get(f"{api}/rules")["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"HubConsumerLagHigh", "HubDeadLettersRising",
                                                                  "HubAuditChainBroken", "HubUnderReplicatedPartitions"}
        proc.terminate()
        proc.wait(timeout=30)
    finally:
        web.stop()
        for p in (gateway, connector):
            hub.stop(p)
