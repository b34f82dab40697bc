"""How tests reach the session's secured broker: its address, CA and the principals' passwords.

The session fixture (tests/conftest.py) starts the broker and records where its trust material is in the
environment (``HUB_KAFKA__CA_FILE``, ``HUB_KAFKA__CREDENTIALS_DIR``), so in-process settings and child
processes connect as their principals the way the hub does everywhere: over TLS with SCRAM-SHA-512.
"""

from __future__ import annotations

import os
from pathlib import Path

from hub import identity
from hub.kafka.clients import KafkaAccess, access_as
from hub.settings import HubSettings

SECURITY_VARS = ("HUB_KAFKA__CA_FILE", "HUB_KAFKA__CREDENTIALS_DIR", "HUB_KAFKA__SECURITY_PROTOCOL")


def security_env() -> dict[str, str]:
    """The variables a child process needs to connect to the session broker (plus HUB_ENV=dev)."""
    env = {k: os.environ[k] for k in SECURITY_VARS if k in os.environ}
    env["HUB_ENV"] = "dev"
    return env


def access(bootstrap: str, principal: str = identity.ADMIN) -> KafkaAccess:
    """The session broker as ``principal`` (default: the super user, for test set-up and checks)."""
    return access_as(HubSettings(kafka_bootstrap=bootstrap), principal)


def kafka_processes_of(home: Path) -> list[str]:
    """The command lines of the live ``kafka.Kafka`` processes whose command line names ``home``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "kafka.Kafka" in cmdline and str(home) in cmdline:
                found.append(cmdline)
    return found

