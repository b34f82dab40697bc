"""The operators' stack (docker-compose.yml, Dockerfile, deploy/) is consistent with itself and with the hub.

No Docker engine is needed: the files are parsed and cross-checked. The official compose-spec JSON schema
is not used (not available offline); the structure is checked with explicit assertions instead.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from hub.settings import REPO_ROOT, HubSettings

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
ENV_FILE = "deploy/hub.env"
ENV_EXAMPLE = REPO_ROOT / "deploy" / "hub.env.example"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "samverkan-hub.json"
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
BOOTSTRAP = "kafka-1:9092,kafka-2:9092,kafka-3:9092"
HUB_SERVICES = ("topics", "worker", "ingest", "web", "polisen-feed")


# -- helpers ---------------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert services
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file") or []
    if isinstance(files, str | dict):
        files = [files]
    return [f["path"] if isinstance(f, dict) else f for f in files]


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        out[key.strip()] = value.strip()
    return out


def valid_hub_variables() -> set[str]:
    """Every environment variable HubSettings reads: HUB_<FIELD> and HUB_<GROUP>__<FIELD> for nested models."""
    names: set[str] = set()
    for name, field in HubSettings.model_fields.items():
        names.add(f"HUB_{name.upper()}")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(f"HUB_{name.upper()}__{sub.upper()}" for sub in annotation.model_fields)
    return names


def _published_ports(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host port, container port) of every published port, short or long syntax."""
    out: list[tuple[str, str]] = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((str(port.get("published", "")), str(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        host, target = (parts[-2], parts[-1]) if len(parts) >= 2 else ("", parts[0])
        out.append((host, target))
    return out


def _service_ports(name: str, service: dict[str, Any]) -> set[int]:
    """Ports the service listens on inside the network: published targets, `expose`, HUB_*PORT settings."""
    ports = {int(target) for _, target in _published_ports(service)}
    ports |= {int(str(p).split("/")[0]) for p in service.get("expose") or []}
    ports |= {int(v) for k, v in _environment(service).items() if k.endswith(("__PORT", "__WEB_PORT", "__STATUS_PORT"))}
    return ports


# -- the compose file ------------------------------------------------------------------------------------


def test_compose_has_no_version_key_and_every_service_has_an_image_or_build() -> None:
    compose = _compose()
    assert "version" not in compose, "the compose specification has no `version:` key"
    for name, service in _services().items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"
        build = service.get("build")
        if build is not None:
            context = REPO_ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: {context / dockerfile} missing"


def test_every_referenced_file_exists() -> None:
    compose = _compose()
    declared_volumes = set((compose.get("volumes") or {}).keys())
    for name, service in _services().items():
        for volume in service.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO_ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: named volume {source!r} not declared"
        for env_file in _env_files(service):
            if env_file == ENV_FILE:
                assert ENV_EXAMPLE.is_file(), f"{ENV_FILE} is created from {ENV_EXAMPLE.name}, which is missing"
            else:
                assert (REPO_ROOT / env_file).is_file(), f"{name}: env_file {env_file} missing"
    # deploy/hub.env holds the secrets: it must be git-ignored, its example must not be.
    patterns = [p.strip() for p in (REPO_ROOT / ".gitignore").read_text().splitlines() if p.strip()]
    ignored = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(Path(ENV_FILE).name, p)]
    assert ignored, f"{ENV_FILE} is not git-ignored"
    kept = [p for p in patterns if p.startswith("!") and fnmatch.fnmatch(ENV_EXAMPLE.name, p[1:])]
    assert kept, f"{ENV_EXAMPLE.name} would be git-ignored too; it must be committed"


def test_published_host_ports_are_unique() -> None:
    seen: dict[str, str] = {}
    for name, service in _services().items():
        for host, _ in _published_ports(service):
            if not host:
                continue
            assert host not in seen, f"host port {host} published by both {seen[host]} and {name}"
            seen[host] = name
    # A replicated service cannot publish a fixed host port (the replicas would collide).
    for name, service in _services().items():
        if (service.get("deploy") or {}).get("replicas", 1) > 1:
            assert not any(host for host, _ in _published_ports(service)), f"{name}: replicas with a host port"
            assert "container_name" not in service, f"{name}: replicas with a fixed container_name"


def test_three_kraft_brokers_with_replication_3_and_min_isr_2() -> None:
    services = _services()
    brokers = {n: s for n, s in services.items() if "kafka" in str(s.get("image", "")) and "ui" not in n}
    assert sorted(brokers) == list(BROKERS)
    node_ids = set()
    for name, broker in brokers.items():
        assert str(broker["image"]).startswith("apache/kafka"), f"{name}: not the official Apache image"
        env = _environment(broker)
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, name
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert sorted(v.split("@")[1].split(":")[0] for v in voters) == list(BROKERS), f"{name}: voters {voters}"
        assert f"{env['KAFKA_NODE_ID']}@{name}:" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"], name
        node_ids.add(env["KAFKA_NODE_ID"])
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"], name
        assert env.get("CLUSTER_ID"), f"{name}: no CLUSTER_ID"
        data = [str(v).split(":") for v in broker.get("volumes") or []]
        assert any(src == f"{name}-data" and dst == env["KAFKA_LOG_DIRS"] for src, dst, *_ in data), name
    assert len(node_ids) == 3
    assert len({_environment(b)["CLUSTER_ID"] for b in brokers.values()}) == 1


def test_hub_services_use_the_cluster_and_start_in_order() -> None:
    services = _services()
    for name in HUB_SERVICES:
        service = services[name]
        env = _environment(service)
        assert env["HUB_KAFKA_BOOTSTRAP"] == BOOTSTRAP, name
        assert ENV_FILE in _env_files(service), f"{name}: secrets not from {ENV_FILE}"
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for broker in BROKERS:
            assert depends[broker]["condition"] == "service_healthy", f"{name} -> {broker}"
        if name != "topics":
            assert depends["topics"]["condition"] == "service_completed_successfully", name
    assert services["topics"]["command"] == ["topics", "create"]
    assert _environment(services["topics"])["HUB_WORKER__REPLICATION_FACTOR"] == "3"
    assert services["worker"]["command"] == ["worker"]
    assert services["ingest"]["command"] == ["ingest"]
    assert services["polisen-feed"]["command"][:2] == ["connector", "polisen-feed"]


def test_worker_runs_two_replicas_without_a_shared_static_membership_id() -> None:
    worker = _services()["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert "HUB_WORKER__INSTANCE_ID" not in _environment(worker), "replicas would share one static id"
    assert "HUB_WORKER__INSTANCE_ID" not in _read_env_file(ENV_EXAMPLE)


def test_polisen_feed_only_under_its_profile() -> None:
    for name, service in _services().items():
        command = " ".join(map(str, service.get("command") or []))
        if name == "polisen-feed" or "polisen-feed" in command:
            assert service.get("profiles") == ["polisen-feed"], f"{name}: must be off by default"
        else:
            assert not service.get("profiles"), f"{name}: unexpectedly behind a profile"


def test_every_service_has_a_healthcheck_or_is_a_documented_exception() -> None:
    no_endpoint = {"topics"}  # a one-shot job
    for name, service in _services().items():
        check = service.get("healthcheck")
        assert check, f"{name}: no healthcheck"
        if check.get("disable"):
            assert name in no_endpoint, f"{name}: healthcheck disabled"
        else:
            assert check.get("test"), f"{name}: healthcheck without test"
    services = _services()
    for name, path in (("worker", "health"), ("ingest", "health"), ("polisen-feed", "ready")):
        port = next(iter(_service_ports(name, services[name]) & {6066, 8088, 8090}))
        assert f":{port}/{path}" in " ".join(services[name]["healthcheck"]["test"]), name


def test_every_hub_variable_is_a_real_setting() -> None:
    valid = valid_hub_variables()
    used = set(re.findall(r"\bHUB_[A-Z0-9_]+", COMPOSE.read_text(encoding="utf-8")))
    used |= set(re.findall(r"\bHUB_[A-Z0-9_]+", DOCKERFILE.read_text(encoding="utf-8")))
    used |= set(_read_env_file(ENV_EXAMPLE))
    unknown = sorted(used - valid)
    assert not unknown, f"not settings of hub.settings.HubSettings: {unknown}"
    assert {"HUB_SECRET_KEY", "HUB_PSEUDONYM_KEYS", "HUB_INGEST__TOKENS"} <= set(_read_env_file(ENV_EXAMPLE))


@pytest.mark.parametrize("name", HUB_SERVICES)
def test_each_hub_service_environment_loads_as_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example secrets plus the service's environment parse as HubSettings (types, JSON values)."""
    import os

    for var in list(os.environ):
        if var.startswith("HUB_"):
            monkeypatch.delenv(var)
    service = _services()[name]
    for key, value in {**_read_env_file(ENV_EXAMPLE), **_environment(service)}.items():
        monkeypatch.setenv(key, value)
    settings = HubSettings()
    assert settings.kafka_bootstrap == BOOTSTRAP
    assert settings.worker.instance_id is None
    assert settings.secret_key.get_secret_value() != "samverkan-hub-development-only-secret"
    if name == "worker":
        assert settings.worker.web_host == "0.0.0.0"
        assert settings.worker.web_port in _service_ports(name, service)
    if name == "ingest":
        assert settings.ingest.host == "0.0.0.0"
        assert (str(settings.ingest.port), str(settings.ingest.port)) in _published_ports(service)
    if name == "web":
        assert settings.web.host == "0.0.0.0"
        assert (str(settings.web.port), str(settings.web.port)) in _published_ports(service)
        assert settings.web.session_secret.get_secret_value() != "samverkan-hub-development-only-secret"
        assert settings.web.users, "the example env file defines web users"
        assert settings.web.worker_metrics_url == "http://worker:6066/metrics"


# -- Prometheus and Grafana ------------------------------------------------------------------------------


def test_prometheus_is_mounted_and_scrapes_the_services_on_their_ports() -> None:
    services = _services()
    mounts = [str(v) for v in services["prometheus"].get("volumes") or []]
    assert any(m.startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    targets: list[tuple[str, int, str]] = []
    for job in config["scrape_configs"]:
        path = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs") or []:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.append((host, int(port), path))
        for dns in job.get("dns_sd_configs") or []:
            targets.extend((host, int(dns["port"]), path) for host in dns["names"])
    assert targets
    for host, port, path in targets:
        assert host in services, f"scrape target {host} is not a compose service"
        assert port in _service_ports(host, services[host]), f"{host} does not listen on {port}"
        assert path == "/metrics"
    scraped = {(h, p) for h, p, _ in targets}
    assert {("worker", 6066), ("ingest", 8088), ("web", 8000), ("polisen-feed", 8090)} <= scraped


def _exposed_metric_names() -> set[str]:
    """Every sample name the hub's code can expose (prometheus_client suffix rules), from the source."""
    pattern = re.compile(r"\b(Counter|Histogram|Gauge|Summary)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"")
    names: set[str] = set()
    for folder in ("hub", "connectors"):
        for source in (REPO_ROOT / folder).rglob("*.py"):
            for kind, name in pattern.findall(source.read_text(encoding="utf-8")):
                if kind == "Counter":
                    base = name.removesuffix("_total")
                    names |= {f"{base}_total", f"{base}_created"}
                elif kind in ("Histogram", "Summary"):
                    names |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
                else:
                    names.add(name)
    return names


_PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "rate", "irate", "increase", "histogram_quantile", "by", "without",
    "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool", "topk", "bottomk",
    "delta", "deriv", "abs", "clamp_min", "clamp_max", "label_replace", "vector", "scalar", "time", "le",
}  # fmt: skip
_PROMETHEUS_BUILTINS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_names_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, grouping labels, ranges and strings removed)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {t for t in tokens if t not in _PROMQL_WORDS}


def test_grafana_provisioning_is_mounted() -> None:
    grafana = _services()["grafana"]
    mounts = {str(v).split(":")[0] for v in grafana.get("volumes") or []}
    assert {"./deploy/grafana/provisioning", "./deploy/grafana/dashboards"} <= mounts
    provisioning = REPO_ROOT / "deploy" / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert 9090 in _service_ports("prometheus", _services()["prometheus"])
    provider = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text(encoding="utf-8"))
    container_dir = next(str(v).split(":")[1] for v in grafana["volumes"] if "deploy/grafana/dashboards" in str(v))
    assert provider["providers"][0]["options"]["path"] == container_dir


def test_dashboard_queries_use_only_metrics_the_hub_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    known = _exposed_metric_names() | _PROMETHEUS_BUILTINS
    used: set[str] = set()
    for expr in exprs:
        names = metric_names_in(expr)
        assert names, f"no metric in {expr!r}"
        unknown = names - known
        assert not unknown, f"{expr!r} uses metrics the hub does not expose: {sorted(unknown)}"
        used |= names
    for required in ("hub_events_received_total", "hub_deliveries_total", "hub_refusals_total",
                     "hub_deadletters_total", "hub_processing_seconds_bucket"):  # fmt: skip
        assert required in used, f"no dashboard panel for {required}"
    quantiles = [e for e in exprs if "histogram_quantile" in e and "hub_processing_seconds_bucket" in e]
    assert any("(0.5," in e for e in quantiles)
    assert any("(0.99," in e for e in quantiles)


def test_metric_name_extraction_catches_a_wrong_name() -> None:
    assert metric_names_in('sum by (reason) (rate(hub_refusal_total{job="x"}[5m]))') == {"hub_refusal_total"}
    assert "hub_refusal_total" not in _exposed_metric_names()


# -- Dockerfile ------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_is_non_root_with_healthcheck_and_hub_entrypoint() -> None:
    instructions = _dockerfile_instructions()
    froms = [rest for kw, rest in instructions if kw == "FROM"]
    assert froms
    assert froms[0].startswith("python:3.11-slim")
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    health = [rest for kw, rest in instructions if kw == "HEALTHCHECK"]
    assert health
    assert "/health" in health[-1]
    assert "6066" in health[-1]
    assert "curl" not in health[-1]
    entrypoints = [json.loads(rest) for kw, rest in instructions if kw == "ENTRYPOINT"]
    assert entrypoints
    assert entrypoints[-1] == ["hub"]
    exposed = {p for kw, rest in instructions if kw == "EXPOSE" for p in rest.split()}
    assert {"6066", "8088"} <= exposed
    runs = " ".join(rest for kw, rest in instructions if kw == "RUN")
    assert "pip install" in runs


def test_dockerfile_copies_exist_and_are_not_dockerignored() -> None:
    ignored = [p.strip() for p in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
               if p.strip() and not p.strip().startswith("#")]  # fmt: skip
    sources: list[str] = []
    for kw, rest in _dockerfile_instructions():
        if kw in ("COPY", "ADD") and "--from" not in rest:
            sources.extend(rest.split()[:-1])
    assert {"pyproject.toml", "hub", "connectors", "schemas", "hub/rules"} <= set(sources)
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not any(fnmatch.fnmatch(source, p) for p in ignored), f"COPY {source}: excluded by .dockerignore"
    # The settings the image points at exist in the repository layout it copies.
    env = dict(re.findall(r"(HUB_[A-Z_]+)=(\S+)", DOCKERFILE.read_text(encoding="utf-8")))
    assert env["HUB_SCHEMAS_DIR"] == "/app/schemas"
    assert env["HUB_RULES_PATH"] == "/app/hub/rules/halland.yaml"
    assert (REPO_ROOT / "hub" / "rules" / "halland.yaml").is_file()
