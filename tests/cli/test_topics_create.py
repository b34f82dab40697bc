"""`hub topics create` uses the configured replication factor (the compose topics job used to create every
topic with replication 1 whatever HUB_WORKER__REPLICATION_FACTOR said), refuses loudly when the broker does
not create a topic, and warns about existing topics replicated less than configured."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from hub.kafka.local import LocalBroker
from tests.hub.support import REPO

pytestmark = pytest.mark.kafka


def _topics_create(broker: LocalBroker, namespace: str, rf: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_LOCAL_KAFKA__HOME=str(broker.home), HUB_LOCAL_KAFKA__PORT=str(broker.port),
               HUB_TOPIC_NAMESPACE=namespace, HUB_WORKER__REPLICATION_FACTOR=str(rf))
    return subprocess.run([sys.executable, "-m", "hub.cli", "topics", "create"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180, check=False, stdin=subprocess.DEVNULL)


def test_topics_create_uses_the_configured_replication_factor(session_broker: LocalBroker | None) -> None:
    if session_broker is None:
        pytest.skip("needs the session's one-node broker (HUB_KAFKA_BOOTSTRAP names another cluster)")
    namespace = f"rf{uuid.uuid4().hex[:6]}."
    # One node cannot hold 2 replicas: the setting reaches the broker, which refuses, and the command says so.
    two = _topics_create(session_broker, namespace, 2)
    assert two.returncode == 1
    assert "error: the broker did not create" in two.stderr
    assert "with replication factor 2" in two.stderr
    assert "InvalidReplicationFactor" in two.stderr
    assert "Traceback" not in two.stderr

    one = _topics_create(session_broker, namespace, 1)
    assert one.returncode == 0, one.stderr
    assert "with replication factor 1" in one.stdout

    again = _topics_create(session_broker, namespace, 2)  # they exist now, with less than configured
    assert again.returncode == 0, again.stderr
    assert "all topics exist" in again.stdout
    assert f"warning: {namespace}hub.audit has replication factor 1, below HUB_WORKER__REPLICATION_FACTOR=2" in (
        again.stderr)
