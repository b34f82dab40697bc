"""What operators' scripts and Kafka's own tools need to reach the secured broker, as they run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.kafka.local import LocalBroker
from tests.hub.support import REPO

pytestmark = pytest.mark.kafka


@pytest.fixture
def broker(session_broker: LocalBroker | None) -> LocalBroker:
    if session_broker is None:
        pytest.skip("HUB_KAFKA_BOOTSTRAP names an existing cluster: no local broker to describe")
    return session_broker


def _env(broker: LocalBroker, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_LOCAL_KAFKA__HOME=str(broker.home), HUB_LOCAL_KAFKA__PORT=str(broker.port),
               HUB_LOCAL_KAFKA__CONTROLLER_PORT=str(broker.controller_port),
               HUB_LOCAL_KAFKA__INTERNAL_PORT=str(broker.internal_port), **extra)
    return env


def _hub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180, check=False, stdin=subprocess.DEVNULL)


def test_status_json_says_how_to_connect_as_the_administrator(broker: LocalBroker) -> None:
    done = _hub(_env(broker), "kafka", "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["bootstrap"] == broker.bootstrap
    assert (status["security_protocol"], status["sasl_mechanism"], status["username"]) == (
        "SASL_SSL", "SCRAM-SHA-512", "admin")
    assert Path(status["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    password = Path(status["password_file"]).read_text().strip()
    assert len(password) >= 32
    assert password not in done.stdout  # the file's path, never the secret
    for secret in (status["password_file"], status["ca_file"]):
        assert Path(secret).stat().st_mode & 0o077 == 0  # not readable by group or others
    assert broker.home.stat().st_mode & 0o077 == 0
    assert broker.data_dir.stat().st_mode & 0o077 == 0


def test_kafkas_own_tools_connect_with_client_config(broker: LocalBroker, tmp_path: Path) -> None:
    config = tmp_path / "admin.properties"
    done = _hub(_env(broker), "kafka", "client-config")
    assert done.returncode == 0, done.stderr
    config.write_text(done.stdout)
    assert "security.protocol=SASL_SSL" in done.stdout
    tool = _hub(_env(broker), "kafka", "tool", "kafka-configs", "--bootstrap-server", broker.bootstrap,
                "--command-config", str(config), "--describe", "--entity-type", "users", "--entity-name", "polisen")
    assert tool.returncode == 0, tool.stderr
    assert "SCRAM-SHA-512" in tool.stdout
    acls = _hub(_env(broker), "kafka", "tool", "kafka-acls", "--bootstrap-server", broker.bootstrap,
                "--command-config", str(config), "--list", "--principal", "User:kommun-1381")
    assert acls.returncode == 0, acls.stderr
    assert "name=agency.kommun.1381.events" in acls.stdout
    assert "agency.polisen.events" not in acls.stdout


def test_a_coordinator_reads_its_own_inbox_with_kafkas_console_consumer_and_nothing_else(
        broker: LocalBroker, tmp_path: Path) -> None:  # fmt: skip
    """An agency's developer with only their client config and Kafka's own console consumer."""
    import asyncio

    from hub.kafka import clients
    from hub.kafka.admin import TopicSpec, ensure_topics

    topic = "deliver.socialtjanst.1380"

    async def put() -> None:
        await ensure_topics(broker.admin_access(), [TopicSpec(topic, 1)])
        producer = clients.producer(broker.admin_access())
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"a delivery for Halmstad")
        finally:
            await producer.stop()

    asyncio.run(put())

    def console(principal: str) -> subprocess.CompletedProcess[str]:
        config = tmp_path / f"{principal}.properties"
        config.write_text(_hub(_env(broker), "kafka", "client-config", principal).stdout)
        return _hub(_env(broker), "kafka", "tool", "kafka-console-consumer", "--bootstrap-server", broker.bootstrap,
                    "--command-config", str(config), "--topic", topic, "--partition", "0", "--offset", "earliest",
                    "--max-messages", "1", "--timeout-ms", "8000")

    own = console("socialtjanst-1380")
    assert own.returncode == 0, own.stderr
    assert own.stdout.strip() == "a delivery for Halmstad"
    other = console("socialtjanst-1381")
    assert other.stdout.strip() == ""
    assert "TopicAuthorizationException: Not authorized to access topics: [deliver.socialtjanst.1380]" in other.stderr


def test_acl_show_desired_needs_no_broker_and_names_every_principal() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    done = _hub(env, "acl", "show", "--desired", "--json")
    assert done.returncode == 0, done.stderr
    grants = json.loads(done.stdout)
    by = {(g["principal"], g["operation"], g["name"]) for g in grants}
    assert ("kommun-1381", "WRITE", "agency.kommun.1381.events") in by
    assert ("socialtjanst-1381", "READ", "deliver.socialtjanst.1381") in by
    assert not [g for g in grants if g["principal"] == "kommun-1381" and g["name"] != "agency.kommun.1381.events"
                and g["resource"] == "TOPIC"]
    writers_of_audit = {g["principal"] for g in grants if g["operation"] in ("WRITE", "ALL")
                        and g["resource"] == "TOPIC" and "hub.audit".startswith(g["name"])}
    assert writers_of_audit == {"worker"}
