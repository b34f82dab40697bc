"""A long-running connector answers /health, /ready, /metrics and /progress while it runs, as an operator's
health check and Prometheus see it: ``hub connector filedrop --status-port`` as a process, real broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.deadline import Deadline
from hub.kafka.local import free_port
from tests.connectors.test_filedrop_connector import KOMMUN_CSV, LAHOLM, expected_ids, make_hub
from tests.hub.support import REPO
from tests.kafka_env import security_env

pytestmark = pytest.mark.kafka


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:  # noqa: S310 - http://127.0.0.1 only
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def produced(metrics_text: str, connector: str) -> float:
    return sum(s.value for fam in text_string_to_metric_families(metrics_text) for s in fam.samples
               if s.name == "hub_connector_events_produced_total" and s.labels == {"connector": connector})  # fmt: skip


def test_filedrop_serves_health_ready_metrics_and_progress_while_it_runs(
    kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str],
) -> None:
    hub = make_hub(kafka_bootstrap, tmp_path, unique)
    hub.state_dir.mkdir(parents=True, exist_ok=True)
    folder = tmp_path / "drop"
    folder.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = hub.start_cli("filedrop", "connector", "filedrop", "--agency", LAHOLM, str(folder),
                         "--interval", "0.2", "--status-port", str(port))  # fmt: skip
    try:
        def ready() -> bool:
            assert proc.poll() is None, f"the connector exited: {hub.log('filedrop')}"
            return _listening(base) and get(f"{base}/ready")[0] == 200

        Deadline(60, "the connector's /ready").wait_for(ready)
        assert get(f"{base}/health") == (200, "ok")
        assert produced(get(f"{base}/metrics")[1], f"filedrop-{LAHOLM}") == 0

        shutil.copy(KOMMUN_CSV, folder / KOMMUN_CSV.name)
        want = len(expected_ids(KOMMUN_CSV, "kommun"))
        Deadline(60, "the dropped file's events acknowledged").wait_for(
            lambda: produced(get(f"{base}/metrics")[1], f"filedrop-{LAHOLM}") == want)
        progress = json.loads(get(f"{base}/progress")[1])
        assert progress["connector"] == f"filedrop-{LAHOLM}"
        assert progress["produced"] == want

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not _listening(base)  # the endpoint goes away with the connector
    finally:
        hub.stop_all()


def _listening(base: str) -> bool:
    try:
        get(f"{base}/health")
    except OSError:
        return False
    return True


def test_a_status_port_in_use_is_a_clear_error_before_anything_is_published(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        folder = tmp_path / "drop"
        folder.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_KAFKA_BOOTSTRAP="127.0.0.1:1", HUB_STATE_DIR=str(tmp_path / "state"), **security_env())
        done = subprocess.run([sys.executable, "-m", "hub.cli", "connector", "filedrop", "--agency", LAHOLM,
                               str(folder), "--status-port", str(port)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert f"the status endpoint cannot listen on 127.0.0.1:{port}" in done.stderr
