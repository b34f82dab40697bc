"""The hub's configuration: the only module that reads the environment.

Every setting is an environment variable with the prefix ``HUB_``; nested groups use ``__``
(``HUB_LOCAL_KAFKA__PORT=19092``). Secrets are :class:`~pydantic.SecretStr` and print as ``**********``
when the settings are logged (:meth:`HubSettings.masked`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root when running from a checkout (``hub/`` lives directly below it).
REPO_ROOT = Path(__file__).resolve().parent.parent


class LocalKafkaSettings(BaseModel):
    """The single-node Apache Kafka broker that ``hub kafka up`` runs on this machine."""

    version: str = "4.4.0"
    """Apache Kafka release (Maven artifact ``org.apache.kafka:kafka_2.13``); see README for why pinned."""
    host: str = "127.0.0.1"
    """Interface the broker listens on: loopback only."""
    port: int = 19092
    """Client (PLAINTEXT) port."""
    controller_port: int = 19093
    """KRaft controller port."""
    heap: str = "512m"
    """Maximum JVM heap (``-Xmx``)."""
    home: Path | None = None
    """Where broker data, logs and the pid file live; defaults to ``<HUB_STATE_DIR>/kafka``."""
    start_timeout_s: float = 90.0
    """How long ``hub kafka up`` waits for a successful metadata request."""
    num_partitions: int = 4
    """Default partition count for topics the broker auto-creates or the hub creates."""


class HubSettings(BaseSettings):
    """All settings of the hub, its connectors and its tools."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    kafka_bootstrap: str | None = None
    """Bootstrap servers of an existing Kafka cluster (``host:port,...``). When set, nothing starts a local
    broker: every command and test uses this cluster (production, docker-compose)."""
    state_dir: Path = Field(default_factory=lambda: REPO_ROOT / ".hub")
    """Git-ignored folder for local runtime state (broker, checkpoints, worker tables)."""
    local_kafka: LocalKafkaSettings = Field(default_factory=LocalKafkaSettings)
    schemas_dir: Path = Field(default_factory=lambda: REPO_ROOT / "schemas")
    """The Avro schemas (the contract)."""
    shared_data_dir: Path = Field(default_factory=lambda: REPO_ROOT.parent / "shared" / "data")
    """Real reference data (police events sample, municipality codes); optional."""
    municipality_codes: list[str] = Field(
        default_factory=lambda: ["1315", "1380", "1381", "1382", "1383", "1384"]
    )
    """Municipalities (SCB codes) the hub serves; default: the six in Halland county."""
    county_code: str = "13"
    """County (län) code used for county-level receivers, e.g. ``deliver.lagesbild.13``."""
    pseudonym_keys: dict[str, SecretStr] = Field(default_factory=dict)
    """Per-receiver HMAC keys for person pseudonyms (``HUB_PSEUDONYM_KEYS='{"vbe": "..."}'``)."""
    log_level: str = "INFO"

    @property
    def kafka_home(self) -> Path:
        return self.local_kafka.home or self.state_dir / "kafka"

    def masked(self) -> dict[str, Any]:
        """The settings as JSON-ready data with every secret masked, for logging at start."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data


@lru_cache(maxsize=1)
def get_settings() -> HubSettings:
    """The process-wide settings, read once from the environment."""
    return HubSettings()
