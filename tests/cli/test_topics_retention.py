"""Retention by purpose, as an operator sees and corrects it: `hub topics show` and `hub topics apply`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest

from hub.kafka.admin import TopicSpec, ensure_topics
from hub.kafka.local import LocalBroker
from tests.hub.support import REPO

DAY_MS = 24 * 3600 * 1000


def _hub(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=REPO, env={**base, **env},
                          capture_output=True, text=True, timeout=180, check=False, stdin=subprocess.DEVNULL)


def test_every_topic_has_a_class_a_retention_and_a_reason() -> None:
    done = _hub("topics", "show", "--offline", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["topic"]: r for r in json.loads(done.stdout)}
    assert all(r["why"] for r in rows.values())
    personal = [r for r in rows.values() if r["class"] == "personal"]
    assert {"agency.polisen.events", "agency.kommun.1381.events", "deliver.sig.1381",
            "deliver.socialtjanst.1380"} <= {r["topic"] for r in personal}
    for r in personal:  # personal data is never kept "forever"
        assert not r["compacted"]
        assert 0 < r["retention_ms"] <= 366 * DAY_MS, r
    assert rows["deliver.sig.1381"]["retention_ms"] == 90 * DAY_MS
    assert rows["hub.audit"] == rows["hub.audit"] | {"class": "trail", "retention": "forever", "retention_ms": -1}
    assert rows["hub.deadletter"]["retention_ms"] == 30 * DAY_MS
    assert rows["deliver.lagesbild.13"]["class"] == "aggregated"
    custom = json.loads(_hub("topics", "show", "--offline", "--json",
                             HUB_RETENTION__PERSONAL_DELIVERY_DAYS="14").stdout)
    assert {r["topic"]: r for r in custom}["deliver.sig.1381"]["retention_ms"] == 14 * DAY_MS


@pytest.mark.kafka
def test_apply_corrects_a_topic_created_with_the_wrong_retention(session_broker: LocalBroker | None) -> None:
    if session_broker is None:
        pytest.skip("needs the session's own broker")
    ns = f"ret{uuid.uuid4().hex[:6]}."
    wrong = TopicSpec(f"{ns}deliver.sig.1381", 1, {"retention.ms": "-1"})  # kept forever: not allowed
    asyncio.run(ensure_topics(session_broker.admin_access(), [wrong]))
    env = {"HUB_LOCAL_KAFKA__HOME": str(session_broker.home), "HUB_LOCAL_KAFKA__PORT": str(session_broker.port),
           "HUB_TOPIC_NAMESPACE": ns}
    shown = {r["topic"]: r for r in json.loads(_hub("topics", "show", "--json", **env).stdout)}
    assert shown[wrong.name]["on_broker"]["retention.ms"] == "-1"
    assert shown[wrong.name]["as_configured"] is False
    applied = _hub("topics", "apply", **env)
    assert applied.returncode == 0, applied.stderr
    assert f"{wrong.name}: retention.ms -1 -> {90 * DAY_MS}" in applied.stdout
    again = {r["topic"]: r for r in json.loads(_hub("topics", "show", "--json", **env).stdout)}
    assert again[wrong.name]["on_broker"]["retention.ms"] == str(90 * DAY_MS)
    assert again[wrong.name]["as_configured"] is True
    assert "every topic is as configured" in _hub("topics", "apply", **env).stdout
