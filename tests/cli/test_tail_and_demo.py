"""`hub tail` and `hub demo` as a user runs them: subprocesses against the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.rules.receivers import RECEIVERS
from hub.topics import AGENCIES
from tests import factories as f
from tests.hub.support import REPO, HubUnderTest, running_hub

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubUnderTest]:
    with running_hub(kafka_bootstrap, tmp_path_factory.mktemp("tail"), "tail") as h:
        yield h


def tail(hub: HubUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", "tail", *args], cwd=REPO, env=hub.env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_tail_shows_a_receivers_deliveries_readable_and_as_json(hub: HubUnderTest) -> None:
    minors = [f.minor_suspected(municipality="1381"), f.minor_suspected(municipality="1381")]
    other = f.minor_suspected(municipality="1384")
    hub.publish([*minors, other])
    hub.read([hub.topics.deliver("socialtjanst", "1381")], until=lambda g: sum(len(v) for v in g.values()) >= 2)

    readable = tail(hub, "socialtjanst", "--municipality", "1381", "--from-beginning", "--max", "2")
    assert readable.returncode == 0, readable.stderr
    lines = readable.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all("socialtjanst.1381" in line and "[statute:LUL-6§]" in line for line in lines)
    assert f.MINOR not in readable.stdout  # masked by default
    assert f"{f.MINOR[:8]}-****" in readable.stdout

    as_json = tail(hub, "socialtjanst", "-m", "1381", "--from-beginning", "--json", "--timeout", "3")
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    ids = {str(e.envelope.event_id) for e in minors}
    assert {r["event_id"] for r in rows} >= ids
    assert all(r["municipality_code"] == "1381" for r in rows)  # the scope: Laholm only
    assert str(other.envelope.event_id) not in {r["event_id"] for r in rows}
    assert rows[0]["fields"]["payload.offence_category"] == "theft"


def test_tail_exits_after_timeout_of_silence_and_rejects_unknown_receivers(hub: HubUnderTest) -> None:
    quiet = tail(hub, "hrv", "-m", "1315", "--timeout", "2")
    assert quiet.returncode == 0
    assert quiet.stdout == ""
    bad = tail(hub, "polisen", "--timeout", "1")
    assert bad.returncode == 2
    assert "unknown receiver 'polisen'" in bad.stderr


def test_demo_runs_unattended_and_delivers(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = HubUnderTest(kafka_bootstrap, f"demo{uuid.uuid4().hex[:6]}.", tmp_path).env
    done = subprocess.run([sys.executable, "-m", "hub.cli", "demo", "--duration", "60"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=400, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.split("demo summary: ", 1)[1].splitlines()[0])
    assert summary["events_in"] > 1000
    # Every receiver family got something: deliveries, or (for the aggregate-only ones) counted events.
    reached = {r: summary["delivered"].get(r, 0) + summary["aggregated"].get(r, 0) for r in RECEIVERS}
    assert all(n > 0 for n in reached.values()), reached
    assert summary["delivered"].get("sig", 0) > 0  # SIG referrals with the person's consent
    assert summary["refused"] > 0  # ... and the ones without it held back
    assert summary["deadletters"] == 0
    # The web app ran beside it: the Laholm SIG coordinator logged in and opened the inbox.
    assert summary["web"]["login"] is True, summary["web"]
    assert summary["web"]["inbox_status"] == 200
    assert f"{summary['web']['url']}/login" in done.stdout  # printed with the demo users' passwords
    assert "laholm-sig" in done.stdout
    if (REPO.parent / "shared" / "data" / "polisen-events-sample.json").exists():
        assert summary["police_replayed"] > 200  # a fresh state dir: every real notice is new


def test_simulate_publishes_at_the_rate_asked_for(kafka_bootstrap: str, tmp_path: Path) -> None:
    hub = HubUnderTest(kafka_bootstrap, f"sim{uuid.uuid4().hex[:6]}.", tmp_path)
    hub.create_topics()
    done = subprocess.run([sys.executable, "-m", "hub.cli", "simulate", "--rate", "200", "--duration", "3"],
                          cwd=REPO, env=hub.env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    progress = json.loads(done.stdout.strip().splitlines()[-1])
    assert 500 <= progress["produced"] <= 600
    topics = hub.topics.sources(hub.settings().municipality_codes)  # every source unit's topic
    got = hub.read(topics, until=lambda g: sum(len(v) for v in g.values()) >= progress["produced"], quiet_s=0.5)
    assert sum(len(v) for v in got.values()) == progress["produced"]
    assert all(any(got[t] for t in topics if hub.topics.agency_of(t) == a) for a in AGENCIES)  # every agency publishes
