"""The hub's configuration: the only module that reads the environment.

Every setting is an environment variable with the prefix ``HUB_``; nested groups use ``__``
(``HUB_LOCAL_KAFKA__PORT=19092``). Secrets are :class:`~pydantic.SecretStr` and print as ``**********``
when the settings are logged (:meth:`HubSettings.masked`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root when running from a checkout (``hub/`` lives directly below it).
REPO_ROOT = Path(__file__).resolve().parent.parent

DEV_SECRET = "samverkan-hub-development-only-secret"  # noqa: S105 - documented dev default, warned about


class LocalKafkaSettings(BaseModel):
    """The single-node Apache Kafka broker that ``hub kafka up`` runs on this machine."""

    version: str = "4.4.0"
    """Apache Kafka release (Maven artifact ``org.apache.kafka:kafka_2.13``); see README for why pinned."""
    host: str = "127.0.0.1"
    """Interface the broker listens on: loopback only."""
    port: int = 19092
    """Client port (SASL_SSL, SCRAM-SHA-512)."""
    controller_port: int = 19093
    """KRaft controller port (mutual TLS)."""
    internal_port: int = 19094
    """Inter-broker port (mutual TLS); also where ``hub kafka up`` provisions users and ACLs."""
    heap: str = "512m"
    """Maximum JVM heap (``-Xmx``)."""
    cluster_heap: str = "384m"
    """Maximum JVM heap of each node of ``hub kafka up --nodes N`` (three fit beside the hub on 2 cores)."""
    home: Path | None = None
    """Where broker data, logs and the pid file live; defaults to ``<HUB_STATE_DIR>/kafka``."""
    start_timeout_s: float = 90.0
    """How long ``hub kafka up`` waits for a successful metadata request."""
    num_partitions: int = 4
    """Default partition count for topics the broker auto-creates or the hub creates."""


class RetentionSettings(BaseModel):
    """How long topics keep what they hold, by data class (``HUB_RETENTION__*``; ``hub topics show``)."""

    agency_days: float = 365.0
    """Agency topics (source events, personal data): long enough to reprocess a year (repair, rebuild)."""
    personal_delivery_days: float = 90.0
    """Inboxes of receivers that get personal data (``sig``, ``socialtjanst``)."""
    aggregate_delivery_days: float = 730.0
    """Inboxes with aggregates and public notices only (two years of lägesbild comparisons)."""
    deadletter_days: float = 30.0
    """``hub.deadletter``: the original bytes of bad input, for repair."""
    increment_days: float = 7.0
    """``hub.lagesbild`` (count increments between the worker's stages) and ``hub.access`` (human reads on their
    way into the audit trail)."""


class KafkaSettings(BaseModel):
    """How every Kafka client of this process connects and as whom (``HUB_KAFKA__*``); see docs/security.md.

    The broker accepts TLS only, and authenticates each party with SASL/SCRAM-SHA-512 (or a client
    certificate). Each process connects as its own principal: ``username`` when set (production: one
    per service), else the principal of its role (``worker``, ``gateway``, ``sig-1381``, …) with the
    password read from ``credentials_dir``.
    """

    security_protocol: Literal["SASL_SSL", "SSL", "PLAINTEXT"] = "SASL_SSL"
    """``SASL_SSL`` (TLS + SCRAM), ``SSL`` (mutual TLS with ``cert_file``/``key_file``). ``PLAINTEXT`` exists
    only for the benchmark's side-by-side measure of what TLS costs, and only with ``HUB_ENV=dev``."""
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    username: str | None = None
    """This process's principal; unset: the principal of the command's role."""
    password: SecretStr | None = None
    """The password of ``username`` (else read from ``password_file`` or ``credentials_dir``)."""
    password_file: Path | None = None
    """A file holding the password of ``username`` (compose secrets)."""
    credentials_dir: Path | None = None
    """A folder of ``<principal>.password`` files (mode 0600), for a process that acts as several principals
    (the web app reads each inbox as its receiver). Default: the local broker's ``security/users``."""
    ca_file: Path | None = None
    """PEM file of the CA that signed the brokers' certificates. Default: the local broker's."""
    cert_file: Path | None = None
    """Client certificate (PEM) for mutual TLS (``security_protocol=SSL``)."""
    key_file: Path | None = None
    """Private key (PEM) of ``cert_file``."""
    check_hostname: bool = True
    """Verify that a broker's certificate names the host connected to (never turn off outside dev)."""


class IngestSettings(BaseModel):
    """The authenticated HTTP ingest gateway (``hub ingest``) agencies post events to."""

    host: str = "127.0.0.1"
    """Interface the gateway listens on (put a TLS-terminating proxy in front in production)."""
    port: int = 8088
    """TCP port of the gateway."""
    tokens: dict[str, list[str]] = Field(default_factory=dict)
    """Bearer tokens per agency, stored hashed: agency -> entries ``"<sha256 hex of token>"`` or
    ``"<sha256 hex>@<ISO-8601 expiry>"`` (``HUB_INGEST__TOKENS='{"polisen": ["9f86...@2026-12-31T00:00Z"]}'``)."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted (413 above)."""
    max_lines: int = 5000
    """Most events in one NDJSON batch (413 above)."""
    max_depth: int = 32
    """Deepest JSON nesting accepted in one event (400 above)."""
    max_in_flight: int = 10000
    """Events sent to Kafka but not yet acknowledged; at or above it a request gets 429."""
    max_in_flight_per_unit: int | None = None
    """Events one source unit may have awaiting acknowledgement (429 for that unit only, others are served);
    unset: half of ``max_in_flight``."""
    tokens_file: Path | None = None
    """A JSON file of more token entries (the shape of ``tokens``), re-read within a second when it changes:
    credentials are added and revoked without a restart (docs/ingest.md)."""
    ack_timeout_s: float = 10.0
    """How long a request waits for the broker to acknowledge its events (503 after)."""
    retry_after_s: int = 1
    """``Retry-After`` seconds sent with 429 and 503."""


class WorkerSettings(BaseModel):
    """The routing worker (``hub worker``)."""

    app_id: str = "samverkan-hub"
    """faust app id = the consumer group every worker joins to share the partitions."""
    replication_factor: int | None = None
    """Replication of the topics the hub creates; unset: the cluster's size up to 3 (1 on one node, 3 on the
    operators' cluster and on ``hub kafka up --nodes 3``)."""
    min_insync_replicas: int | None = None
    """``min.insync.replicas`` of the topics the hub creates; unset: 2 at replication 3 or more, else all."""
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    """Port of the worker's /health, /ready and /metrics."""
    instance_id: str | None = None
    """Static group membership id (unique per worker, e.g. ``worker-1``); unset = dynamic membership."""
    session_timeout_s: float = 10.0
    """How soon the group notices a crashed worker and gives its partitions to the others."""
    processes: int | None = None
    """``hub worker`` processes on this machine (``--processes``); unset: one per core."""
    batch_max_records: int = 2000
    """Messages per batch (one transaction each)."""


class ConnectorSettings(BaseModel):
    """The long-running connectors (``hub connector polisen-feed``, ``hub connector filedrop``)."""

    status_host: str = "127.0.0.1"
    status_port: int | None = None
    """Port of the connector's /health, /ready and /metrics; unset: no HTTP endpoint."""


class LagesbildSettings(BaseModel):
    """The lägesbild stage and its burglary-wave alerts for neighbourhood watch."""

    alert_min_count: int = 3
    """A wave: at least this many residential burglaries in an area in the last 7 days ..."""
    alert_factor: float = 2.0
    """... and at least this many times the area's trailing weekly mean."""
    alert_trailing_weeks: int = 8
    day_horizon_days: int | None = Field(default=None, ge=7)
    """If set, day counts are kept this many days back from the newest day counted (the wave check needs 7
    days and the trailing weeks); older days' figures are final. Unset: kept for good."""
    week_horizon_days: int | None = Field(default=None, ge=7)
    """If set, week counts are kept this many days back from the newest day counted; older weeks' figures
    are final. Unset: kept for good."""

    @model_validator(mode="after")
    def _horizon_covers_the_wave_check(self) -> LagesbildSettings:
        needed = 7 * (self.alert_trailing_weeks + 1)
        if self.day_horizon_days is not None and self.day_horizon_days < needed:
            raise ValueError(f"day_horizon_days must be at least {needed}: the wave check counts that far back")
        return self


class WebUser(BaseModel):
    """One person who may log in to ``hub web``: a coordinator of one receiver in one municipality, or an
    operator. ``hub web --new-user NAME`` prints an entry with a generated password."""

    password_hash: str
    """``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64); the password itself is never stored."""
    role: Literal["coordinator", "operator"] = "coordinator"
    """A coordinator sees one receiver's inbox (and, for ``lagesbild``, the lägesbild); an operator sees the
    operations page only, never an inbox."""
    receiver: str | None = None
    """The coordinator's receiver (``sig``, ``socialtjanst``, ..., ``lagesbild``); None for an operator."""
    municipality: str | None = None
    """SCB code of the coordinator's municipality (``1381``), or the county code (``13``)."""
    display_name: str | None = None
    """Shown in the page header instead of the user name."""

    @model_validator(mode="after")
    def _scope(self) -> WebUser:
        if self.role == "coordinator" and (not self.receiver or not self.municipality):
            raise ValueError("a coordinator needs a receiver and a municipality")
        if self.role == "operator" and (self.receiver or self.municipality):
            raise ValueError("an operator has no receiver or municipality")
        return self


class WebSettings(BaseModel):
    """The coordinators' and operators' web app (``hub web``); see docs/web.md."""

    host: str = "127.0.0.1"
    """Interface the web app listens on (put a TLS-terminating proxy in front in production)."""
    port: int = 8080
    """TCP port of the web app."""
    users: dict[str, WebUser] = Field(default_factory=dict)
    """Who may log in: user name -> entry (``HUB_WEB__USERS='{"laholm-sig": {"password_hash": "scrypt$...",
    "receiver": "sig", "municipality": "1381"}}'``)."""
    session_secret: SecretStr = SecretStr(DEV_SECRET)
    """Key that signs session cookies. The default is for development only; ``hub web`` warns when it is used."""
    session_ttl_s: float = 8 * 3600.0
    """How long a login lasts."""
    cookie_secure: bool = True
    """Send the session cookie over HTTPS only; turn off only for plain-HTTP development on localhost."""
    worker_metrics_url: str | None = None
    """The worker's /metrics for the operations page; default ``http://<worker.web_host>:<worker.web_port>/metrics``."""
    inbox_size: int = 50
    """Newest deliveries an inbox page shows (and keeps as new ones arrive)."""
    sse_heartbeat_s: float = 15.0
    """Seconds between keep-alive comments on an idle live inbox stream."""
    login_max_failures: int = 5
    """Failed logins for one user name within ``login_failure_window_s`` before further attempts get 429."""
    login_failure_window_s: float = 900.0
    operator_cache_s: float = 10.0
    """How long the operations page reuses what it read (audit chain, dead letters, lag) before reading again."""
    health_check_s: float = 60.0
    """Seconds between the web app's checks of the audit chain and of the topics' replication, exported as
    ``hub_audit_chain_intact`` and ``hub_under_replicated_partitions`` for alerting (deploy/prometheus)."""


class AuditSettings(BaseModel):
    """The audit trail's seal (:mod:`hub.audit_seal`) and its anchor store outside Kafka (``HUB_AUDIT__*``)."""

    mac_key: SecretStr | None = None
    """Key of every record's HMAC (``hub audit keygen`` makes one); unset: derived from ``HUB_SECRET_KEY``."""
    signing_key: SecretStr | None = None
    """Ed25519 key that signs the checkpoints (``hub audit keygen``); unset: derived from ``HUB_SECRET_KEY``."""
    verify_key: str | None = None
    """The signing key's public key, for a verifier that holds no secret; checked against the signing key."""
    anchor_dir: Path | None = None
    """Where the checkpoints are anchored outside the cluster: one append-only, fsynced JSON-lines file per
    partition. Unset: ``<HUB_STATE_DIR>/audit-anchors/<namespace>hub.audit``. Several worker machines need
    one shared folder (or another store)."""
    checkpoint_every: int = Field(default=1000, ge=1)
    """A checkpoint after at most this many records of a partition."""
    checkpoint_seconds: float = Field(default=60.0, gt=0)
    """... and at most this long after a partition's last record (the worker checks each batch and when idle)."""


class HubSettings(BaseSettings):
    """All settings of the hub, its connectors and its tools."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    env: Literal["dev", "production"] = "production"
    """``HUB_ENV``. Outside ``dev`` a service refuses to start with a built-in, placeholder or short secret
    (:func:`hub.secrets.require_strong_secrets`); the demo and the tests set ``dev``."""
    kafka_bootstrap: str | None = None
    """Bootstrap servers of an existing Kafka cluster (``host:port,...``). When set, nothing starts a local
    broker: every command and test uses this cluster (production, docker-compose)."""
    state_dir: Path = Field(default_factory=lambda: REPO_ROOT / ".hub")
    """Git-ignored folder for local runtime state (broker, checkpoints, worker tables)."""
    local_kafka: LocalKafkaSettings = Field(default_factory=LocalKafkaSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
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
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    """Master secret from which per-receiver pseudonym keys and the internal person key are derived
    when not given explicitly. The default is for development only; the worker warns when it is used."""
    pseudonym_keys: dict[str, SecretStr] = Field(default_factory=dict)
    """Per-receiver HMAC keys for person pseudonyms (``HUB_PSEUDONYM_KEYS='{"vbe": "..."}'``); a receiver
    without one gets a key derived from ``secret_key``."""
    rules_path: Path = Field(default_factory=lambda: REPO_ROOT / "hub" / "rules" / "halland.yaml")
    """The routing rules (YAML)."""
    topic_namespace: str = ""
    """Prefix of every topic name (e.g. ``staging.``), so several hubs can share one cluster."""
    topic_partitions: int = 4
    """Partitions of the agency, audit and dead-letter topics the hub creates (all the same, so events
    about one person meet their consent state on one worker)."""
    dedup_window_hours: float = 168.0
    """How long an event id is remembered to drop redelivered or re-sent events (default 7 days)."""
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    connector: ConnectorSettings = Field(default_factory=ConnectorSettings)
    lagesbild: LagesbildSettings = Field(default_factory=LagesbildSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    log_level: str = "INFO"

    @property
    def kafka_home(self) -> Path:
        return self.local_kafka.home or self.state_dir / "kafka"

    @property
    def audit_anchor_dir(self) -> Path:
        return self.audit.anchor_dir or self.state_dir / "audit-anchors" / f"{self.topic_namespace}hub.audit"

    def masked(self) -> dict[str, Any]:
        """The settings as JSON-ready data with every secret masked, for logging at start."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data


@lru_cache(maxsize=1)
def get_settings() -> HubSettings:
    """The process-wide settings, read once from the environment."""
    return HubSettings()
