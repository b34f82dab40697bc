"""`hub kafka up | status | down | logs` as a user runs them: subprocesses against a real broker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hub.kafka.local import free_port
from tests.kafka_env import kafka_processes_of


def _hub(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], env=env, capture_output=True, text=True, timeout=timeout,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip



@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_STATE_DIR=str(tmp_path / "state"),
        HUB_LOCAL_KAFKA__PORT=str(free_port()),
        HUB_LOCAL_KAFKA__CONTROLLER_PORT=str(free_port()),
        HUB_LOCAL_KAFKA__INTERNAL_PORT=str(free_port()),
        HUB_ENV="dev",
    )  # its own broker (own CA and passwords in its state dir): none of the session's security settings
    return env


@pytest.mark.kafka
def test_up_status_down_lifecycle(cli_env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "state" / "kafka"
    port = cli_env["HUB_LOCAL_KAFKA__PORT"]
    try:
        up = _hub(cli_env, "kafka", "up")
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"127.0.0.1:{port}"

        again = _hub(cli_env, "kafka", "up")  # idempotent: same broker, no second process
        assert again.returncode == 0, again.stderr
        assert len(kafka_processes_of(home)) == 1

        status = _hub(cli_env, "kafka", "status", "--json")
        assert status.returncode == 0
        info = json.loads(status.stdout)
        assert info["running"] is True
        assert info["bootstrap"] == f"127.0.0.1:{port}"
        assert info["version"].startswith("4.")

        readable = _hub(cli_env, "kafka", "status")
        assert f"running: Apache Kafka {info['version']} at 127.0.0.1:{port}" in readable.stdout

        # `up` provisions every principal's ACLs, and the broker logs each binding it replays: look further back.
        logs = _hub(cli_env, "kafka", "logs", "-n", "3000")
        assert "Kafka Server started" in logs.stdout or "started (kafka.server" in logs.stdout
    finally:
        down = _hub(cli_env, "kafka", "down")
    assert down.returncode == 0
    assert down.stdout.strip() == "stopped"
    assert kafka_processes_of(home) == []
    after = _hub(cli_env, "kafka", "status")
    assert after.returncode == 3
    assert "not running" in after.stdout


@pytest.mark.kafka
def test_failed_start_prints_broker_log_and_exits_nonzero(cli_env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "state" / "kafka"
    with socket.socket() as taken:  # something else already listens on the broker's port
        taken.bind(("127.0.0.1", int(cli_env["HUB_LOCAL_KAFKA__PORT"])))
        taken.listen()
        env = {**cli_env, "HUB_LOCAL_KAFKA__START_TIMEOUT_S": "60"}
        up = _hub(env, "kafka", "up")
    assert up.returncode != 0
    assert "Kafka did not start" in up.stderr
    assert "last lines of the broker's log" in up.stderr
    assert "Address already in use" in up.stderr or "BindException" in up.stderr
    assert kafka_processes_of(home) == []


def test_existing_cluster_setting_skips_local_broker(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "HUB_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092"}
    up = _hub(env, "kafka", "up", timeout=60)
    assert up.returncode == 0
    assert "existing cluster at kafka-1:9092,kafka-2:9092" in up.stdout
