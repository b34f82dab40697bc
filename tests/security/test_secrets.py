"""Secrets fail closed: outside HUB_ENV=dev a service started with a template, default or short secret exits
non-zero with one line naming the setting — and never prints the secret."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from hub.secrets import WeakSecretError, require_strong_secrets, weakness
from hub.settings import DEV_SECRET, HubSettings
from tests.hub.support import REPO

STRONG = secrets.token_urlsafe(48)


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=REPO, env={**base, **env},
                          capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("service", "env", "setting"), [
    (["worker"], {"HUB_SECRET_KEY": "CHANGE-ME-long-random-master-secret"}, "HUB_SECRET_KEY"),
    (["worker"], {}, "HUB_SECRET_KEY"),  # the built-in development default
    (["ingest"], {"HUB_SECRET_KEY": "short"}, "HUB_SECRET_KEY"),
    (["web"], {"HUB_SECRET_KEY": STRONG}, "HUB_WEB__SESSION_SECRET"),
    (["web"], {"HUB_WEB__SESSION_SECRET": "CHANGE-ME-long-random-session-secret"}, "HUB_WEB__SESSION_SECRET"),
    (["worker"], {"HUB_SECRET_KEY": STRONG, "HUB_PSEUDONYM_KEYS": '{"sig": "CHANGE-ME-sig-key"}'},
     "HUB_PSEUDONYM_KEYS[sig]"),
    (["worker"], {"HUB_SECRET_KEY": STRONG, "HUB_KAFKA__USERNAME": "worker",
                  "HUB_KAFKA__PASSWORD": "CHANGE-ME"}, "HUB_KAFKA__PASSWORD"),
    (["simulate", "--duration", "1"], {}, "HUB_SECRET_KEY"),
])  # fmt: skip
def test_a_service_with_a_weak_secret_refuses_to_start(service: list[str], env: dict[str, str], setting: str) -> None:
    # HUB_KAFKA_BOOTSTRAP: a cluster is "there", so only the secret check can stop the service before Kafka.
    done = _run(*service, HUB_KAFKA_BOOTSTRAP="127.0.0.1:9", **env)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines
    started = "connector" if service[0] == "simulate" else service[0]
    assert lines[-1].startswith(f"error: refusing to start {started}: {setting} ")
    assert "Traceback" not in done.stderr
    for value in env.values():
        if len(value) > 9 and value != "worker":  # "CHANGE-ME" itself is named in the reason
            assert value not in done.stderr + done.stdout


def test_a_placeholder_in_the_kafka_password_file_is_refused(tmp_path: object) -> None:
    from pathlib import Path

    secret = Path(str(tmp_path)) / "worker.password"
    secret.write_text("CHANGE-ME-worker-password\n")
    settings = HubSettings(env="production", secret_key=STRONG,  # type: ignore[arg-type]
                           kafka={"username": "worker", "password_file": secret})  # type: ignore[arg-type]
    with pytest.raises(WeakSecretError, match="HUB_KAFKA__PASSWORD_FILE still holds the CHANGE-ME placeholder"):
        require_strong_secrets(settings, "worker")


def test_development_mode_allows_the_defaults() -> None:
    require_strong_secrets(HubSettings(env="dev"), "worker")  # no error
    with pytest.raises(WeakSecretError, match="HUB_SECRET_KEY is the built-in development default"):
        require_strong_secrets(HubSettings(env="production"), "worker")


def test_what_counts_as_weak() -> None:
    assert weakness(DEV_SECRET) == "is the built-in development default"
    assert weakness("x" * 40 + "change-me") == "still holds the CHANGE-ME placeholder"
    assert weakness("a" * 31) == "is shorter than 32 bytes"
    assert weakness("å" * 16) is None  # 32 bytes in UTF-8
    assert weakness(STRONG) is None


def test_plaintext_kafka_is_refused_outside_development() -> None:
    from hub.kafka.clients import KafkaAccessError, access_as

    settings = HubSettings(env="production", kafka={"security_protocol": "PLAINTEXT"})  # type: ignore[arg-type]
    with pytest.raises(KafkaAccessError, match="PLAINTEXT is refused outside HUB_ENV=dev"):
        access_as(settings, "worker")
