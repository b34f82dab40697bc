"""The operators' stack (docker-compose.yml, Dockerfile, deploy/) is consistent with itself and with the hub.

No Docker engine is needed: the files are parsed and cross-checked. The official compose-spec JSON schema
is not used (not available offline); the structure is checked with explicit assertions instead.

Security (issue #13): every Kafka listener is TLS with the broker properties of
:func:`hub.kafka.local.secured_listener_properties`; the one-shot ``pki``, ``provision`` and ``topics`` jobs
run before anything connects; every hub service connects as its own principal and gets only its own
secrets; Kafka, Prometheus and Kafka UI are reachable from the host's loopback at most.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from hub import identity
from hub.kafka.acls import grants_for
from hub.kafka.local import secured_listener_properties
from hub.secrets import PLACEHOLDER
from hub.settings import DEV_SECRET, REPO_ROOT, HubSettings

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
ENV_DIR = REPO_ROOT / "deploy" / "env"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "samverkan-hub.json"
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
BOOTSTRAP = "kafka-1:9092,kafka-2:9092,kafka-3:9092"
PKI_VOLUME = "hub-pki"
PKI_COMMAND = "hub kafka pki /secrets --host kafka-1 --host kafka-2 --host kafka-3"

JOBS = ("pki", "provision", "topics")
"""One-shot jobs, in the order they run: trust material, SCRAM users + ACLs, topics."""
HUB_SERVICES = ("worker", "ingest", "web", "polisen-feed")
"""The long-running hub services."""
PRINCIPALS = {
    "topics": identity.ADMIN,
    "worker": identity.WORKER,
    "ingest": identity.GATEWAY,
    "web": identity.WEB,
    "polisen-feed": identity.POLISEN_FEED,
    "ops-cli": identity.OPERATOR,
    "kafka-ui": identity.OPERATOR,
}
"""Who each client of the cluster connects as (the provision job: the brokers' certificate, a super user)."""

SECRET_VARIABLES = {"HUB_SECRET_KEY", "HUB_PSEUDONYM_KEYS", "HUB_INGEST__TOKENS", "HUB_WEB__SESSION_SECRET",
                    "HUB_WEB__USERS", "HUB_KAFKA__PASSWORD"}  # fmt: skip
OWN_SECRETS: dict[str, set[str]] = {
    "worker": {"HUB_SECRET_KEY", "HUB_PSEUDONYM_KEYS"},  # pseudonyms and person keys
    "ingest": {"HUB_SECRET_KEY", "HUB_INGEST__TOKENS"},  # person keys of event keys, the agencies' tokens
    "web": {"HUB_WEB__SESSION_SECRET", "HUB_WEB__USERS"},
}
"""The hub secrets each service gets (every other hub service: none). Kafka passwords come as files."""

# The apache/kafka image turns KAFKA_* variables into server.properties, except these (KafkaDockerWrapper).
_KAFKA_IMAGE_EXCLUDED = {"KAFKA_VERSION", "KAFKA_HEAP_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS",
                         "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS", "KAFKA_LOG4J_ROOT_LOGLEVEL",
                         "KAFKA_LOG4J_LOGGERS", "KAFKA_TOOLS_LOG4J_LOGLEVEL", "KAFKA_JMX_HOSTNAME"}  # fmt: skip


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


def _hub_image_services() -> dict[str, dict[str, Any]]:
    """Every service that runs the hub's own image (jobs, services, the operators' CLI)."""
    return {n: s for n, s in _services().items() if s.get("build")}


def _uncompose(value: str) -> str:
    """A compose value as the container sees it: ``$$`` is a literal ``$`` (interpolation)."""
    return value.replace("$$", "$")


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


def _example(env_file: str) -> Path:
    """The committed example of an operator's (git-ignored) env file."""
    return REPO_ROOT / f"{env_file}.example"


def _read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads them: a value in single quotes is literal, double quotes are removed."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            assert "$" not in value, f"{path.name}: {key}: unquoted `$` would be interpolated; single-quote it"
        out[key.strip()] = value
    return out


def _env_file_variables(service: dict[str, Any]) -> dict[str, str]:
    """What the service's env files (their committed examples) set."""
    out: dict[str, str] = {}
    for env_file in _env_files(service):
        out.update(_read_env_file(_example(env_file)))
    return out


def _all_env_examples() -> list[Path]:
    return sorted(ENV_DIR.glob("*.env.example"))


def valid_hub_variables() -> set[str]:
    """Every environment variable HubSettings reads: HUB_<FIELD> and HUB_<GROUP>__<FIELD> for nested models."""
    names: set[str] = set()
    for name, field in HubSettings.model_fields.items():
        names.add(f"HUB_{name.upper()}")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(f"HUB_{name.upper()}__{sub.upper()}" for sub in annotation.model_fields)
    return names


def _published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of every published port, short or long syntax."""
    out: list[tuple[str, str, str]] = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append(("", parts[0], parts[1]))
        else:
            out.append(("", "", parts[0]))
    return out


def _service_ports(name: str, service: dict[str, Any]) -> set[int]:
    """Ports the service listens on inside the network: published targets, `expose`, HUB_*PORT settings."""
    ports = {int(target) for _, _, target in _published_ports(service)}
    ports |= {int(str(p).split("/")[0]) for p in service.get("expose") or []}
    ports |= {int(v) for k, v in _environment(service).items() if k.endswith(("__PORT", "__WEB_PORT", "__STATUS_PORT"))}
    return ports


def _volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    """Every mount in long form: type, source, target, read_only, subpath (short syntax normalised)."""
    out: list[dict[str, Any]] = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            out.append({"type": volume.get("type", "volume"), "source": str(volume.get("source", "")),
                        "target": str(volume["target"]), "read_only": bool(volume.get("read_only", False)),
                        "subpath": (volume.get("volume") or {}).get("subpath")})  # fmt: skip
            continue
        source, target, *mode = str(volume).split(":")
        kind = "bind" if source.startswith((".", "/")) else "volume"
        read_only = "ro" in (mode[0].split(",") if mode else [])
        out.append({"type": kind, "source": source, "target": target, "read_only": read_only, "subpath": None})
    return out


def _pki_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> subpath of every mount from the trust-material volume (the whole volume: subpath "")."""
    return {v["target"]: v["subpath"] or "" for v in _volumes(service) if v["source"] == PKI_VOLUME}


def _kafka_properties(broker: dict[str, Any]) -> dict[str, str]:
    """The broker's server.properties as the apache/kafka image writes them from its KAFKA_* variables
    (``_`` -> ``.``, ``__`` -> ``_``, ``___`` -> ``-``, lower case; see KafkaDockerWrapper)."""
    props: dict[str, str] = {}
    for key, value in _environment(broker).items():
        if not key.startswith("KAFKA_") or key in _KAFKA_IMAGE_EXCLUDED:
            continue
        name = key.removeprefix("KAFKA_").lower().replace("_", ".").replace("...", "-").replace("..", "_")
        props[name] = _uncompose(value)
    return props


def _listeners(props: dict[str, str]) -> dict[str, tuple[str, int]]:
    """listener name -> (security protocol, port)."""
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    out: dict[str, tuple[str, int]] = {}
    for listener in props["listeners"].split(","):
        name, _, address = listener.partition("://")
        out[name] = (protocols[name], int(address.rsplit(":", 1)[1]))
    return out


def _depends(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    assert isinstance(depends, dict), "depends_on needs conditions"
    return {name: spec["condition"] for name, spec in depends.items()}


def _ancestors(name: str) -> set[str]:
    services = _services()
    seen: set[str] = set()
    todo = list(_depends(services[name]))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(_depends(services[dep]))
    return seen


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


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


def test_every_dollar_is_escaped_for_compose_interpolation() -> None:
    """A lone `$` would be replaced by compose (or fail); literal ones are written `$$`."""
    for value in _strings(_compose()):
        assert "$" not in value.replace("$$", ""), f"unescaped `$` in {value!r}"


def test_every_referenced_file_exists() -> None:
    compose = _compose()
    declared_volumes = set((compose.get("volumes") or {}).keys())
    patterns = [p.strip() for p in (REPO_ROOT / ".gitignore").read_text().splitlines() if p.strip()]
    for name, service in _services().items():
        for volume in _volumes(service):
            if volume["type"] == "bind":
                assert (REPO_ROOT / volume["source"]).exists(), f"{name}: bind mount {volume['source']} missing"
            else:
                assert volume["source"] in declared_volumes, f"{name}: named volume {volume['source']!r} undeclared"
        for env_file in _env_files(service):
            # The operator's env file holds secrets: git-ignored, made from a committed example.
            assert _example(env_file).is_file(), f"{name}: {env_file} is made from {env_file}.example: missing"
            file_name, example_name = Path(env_file).name, _example(env_file).name
            ignored = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(file_name, p)]
            assert ignored, f"{env_file} is not git-ignored"
            kept = [p for p in patterns if p.startswith("!") and fnmatch.fnmatch(example_name, p[1:])]
            assert kept, f"{example_name} would be git-ignored too; it must be committed"
    assert not (REPO_ROOT / "deploy" / "hub.env.example").exists(), "one env file per service (deploy/env/)"


def test_published_host_ports_are_unique() -> None:
    seen: dict[tuple[str, str], str] = {}
    for name, service in _services().items():
        for ip, host, _ in _published_ports(service):
            if not host:
                continue
            assert (ip, host) not in seen, f"host port {host} published by both {seen[(ip, host)]} and {name}"
            seen[(ip, host)] = name
    # A replicated service cannot publish a fixed host port (the replicas would collide).
    for name, service in _services().items():
        if (service.get("deploy") or {}).get("replicas", 1) > 1:
            assert not any(host for _, host, _ in _published_ports(service)), f"{name}: replicas with a host port"
            assert "container_name" not in service, f"{name}: replicas with a fixed container_name"


def test_kafka_prometheus_and_kafka_ui_are_not_reachable_from_outside_the_host() -> None:
    services = _services()
    for name in (*BROKERS, "prometheus", "kafka-ui"):
        for ip, host, target in _published_ports(services[name]):
            assert ip == "127.0.0.1", f"{name}: port {target} published as {ip or '*'}:{host}, not on loopback"
    for name in BROKERS:
        assert not services[name].get("ports"), f"{name}: the brokers publish no port at all"
        assert services[name].get("network_mode") != "host", name


# -- Kafka -----------------------------------------------------------------------------------------------


def _brokers() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _services().items() if str(s.get("image", "")).startswith("apache/kafka")}


def test_three_kraft_brokers_with_replication_3_and_min_isr_2() -> None:
    brokers = _brokers()
    assert sorted(brokers) == list(BROKERS)
    node_ids = set()
    for name, broker in brokers.items():
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
        advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
        assert f"CLIENT://{name}:9092" in advertised, name
        assert {a.split("://")[0] for a in advertised} == {"CLIENT", "INTERNAL"}, name
        assert all(a.split("://")[1].startswith(f"{name}:") for a in advertised), f"{name} advertises another host"
        assert env.get("CLUSTER_ID"), f"{name}: no CLUSTER_ID"
        data = [v for v in _volumes(broker) if v["source"] == f"{name}-data"]
        assert [v["target"] for v in data] == [env["KAFKA_LOG_DIRS"]], name
    assert len(node_ids) == 3
    assert len({_environment(b)["CLUSTER_ID"] for b in brokers.values()}) == 1


def test_every_listener_is_tls_clients_scram_and_brokers_mutual_tls() -> None:
    for name, broker in _brokers().items():
        props = _kafka_properties(broker)
        listeners = _listeners(props)
        assert set(listeners) == {"CLIENT", "INTERNAL", "CONTROLLER"}, name
        assert all(proto in ("SSL", "SASL_SSL") for proto, _ in listeners.values()), f"{name}: {listeners}"
        assert "PLAINTEXT" not in props["listener.security.protocol.map"], name
        assert listeners["CLIENT"][0] == "SASL_SSL", name
        assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512", name
        assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512", name
        # Inter-broker and controller traffic: TLS with a client certificate on both ends.
        inter, controller = props["inter.broker.listener.name"], props["controller.listener.names"]
        assert (inter, controller) == ("INTERNAL", "CONTROLLER"), name
        for listener in (inter, controller):
            assert listeners[listener][0] == "SSL", f"{name}: {listener}"
            assert props[f"listener.name.{listener.lower()}.ssl.client.auth"] == "required", f"{name}: {listener}"
        # Every advertised listener exists and is secured as above.
        for advertised in props["advertised.listeners"].split(","):
            listener, _, address = advertised.partition("://")
            assert int(address.rsplit(":", 1)[1]) == listeners[listener][1], f"{name}: {advertised}"
        # The image's start script demands JKS keystore passwords for an advertised "...SSL://" listener and a
        # JAAS file for "SASL_...": the listener names must avoid both (the protocols come from the map).
        assert "SSL://" not in props["advertised.listeners"], name
        assert "SASL_" not in props["advertised.listeners"], name


def test_brokers_use_the_hubs_security_properties_with_their_own_keystore() -> None:
    """The security block is exactly hub.kafka.local.secured_listener_properties (what the hub runs
    locally), with this broker's keystore and the CA mounted read-only from the pki volume."""
    for name, broker in _brokers().items():
        props = _kafka_properties(broker)
        keystore, ca = props["ssl.keystore.location"], props["ssl.truststore.location"]
        expected = secured_listener_properties(Path(keystore), Path(ca))
        for key, value in expected.items():
            assert props.get(key) == value, f"{name}: {key}={props.get(key)!r}, the hub uses {value!r}"
        assert _pki_mounts(broker) == {keystore: f"brokers/{name}.pem", ca: "ca.pem"}, f"{name}: mounts"
        assert all(v["read_only"] for v in _volumes(broker) if v["source"] == PKI_VOLUME), name


def test_deny_by_default_with_the_standard_authorizer_and_no_topic_auto_creation() -> None:
    for name, broker in _brokers().items():
        props = _kafka_properties(broker)
        assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer", name
        assert props["allow.everyone.if.no.acl.found"] == "false", name
        assert props["auto.create.topics.enable"] == "false", name
        assert set(props["super.users"].split(";")) == {f"User:{identity.ADMIN}", "User:kafka-broker"}, name


def test_broker_healthcheck_uses_the_brokers_own_certificate_on_the_mutual_tls_listener() -> None:
    for name, broker in _brokers().items():
        props = _kafka_properties(broker)
        check = " ".join(broker["healthcheck"]["test"])
        assert f"localhost:{_listeners(props)['INTERNAL'][1]}" in check, name
        assert "security.protocol=SSL" in check, name
        assert props["ssl.keystore.location"] in check, name
        assert props["ssl.truststore.location"] in check, name


# -- trust material, users, topics, start order ----------------------------------------------------------


def test_pki_job_makes_the_trust_material_before_the_brokers_start() -> None:
    services = _services()
    pki = services["pki"]
    assert pki.get("build"), "the pki job runs the hub image"
    assert pki.get("restart") == "no"
    assert PKI_COMMAND in " ".join([*(pki.get("entrypoint") or []), *pki["command"]])
    assert _pki_mounts(pki) == {"/secrets": ""}, "the pki job writes into the named volume"
    assert not _env_files(pki), "the pki job has no secrets"
    for name in BROKERS:
        assert _depends(services[name]) == {"pki": "service_completed_successfully"}, name
        # The brokers run as the image's own user; they read the hub-owned (0640) keystore through the group.
        assert [str(g) for g in services[name].get("group_add") or []] == [_hub_gid()], name
    script = " ".join(pki["command"])
    assert all(f"/secrets/brokers/{b}.pem" in script for b in BROKERS)
    assert "chmod 0640" in script


def _hub_gid() -> str:
    found = re.search(r"groupadd --system --gid (\d+) hub", DOCKERFILE.read_text(encoding="utf-8"))
    assert found
    return found.group(1)


def test_only_the_pki_job_mounts_the_whole_trust_volume() -> None:
    for name, service in _services().items():
        mounts = _pki_mounts(service)
        if name == "pki":
            continue
        assert "" not in mounts.values(), f"{name} mounts the whole {PKI_VOLUME} volume (the CA key is there)"
        assert "ca.key" not in mounts.values(), name
        keystores = {s for s in mounts.values() if s.startswith("brokers/")}
        if name in BROKERS:
            assert keystores == {f"brokers/{name}.pem"}, name
        elif name == "provision":
            assert len(keystores) == 1, name  # the brokers' certificate: the super user before any SCRAM user
        else:
            assert not keystores, f"{name} mounts a broker keystore"


def test_provision_job_creates_users_and_acls_as_the_broker_certificate() -> None:
    services = _services()
    job = services["provision"]
    env = _environment(job)
    assert job["command"] == ["kafka", "provision"]
    assert job.get("restart") == "no"
    assert not _env_files(job), "the provision job has no hub secrets"
    assert env["HUB_KAFKA__SECURITY_PROTOCOL"] == "SSL"
    mounts = _pki_mounts(job)
    assert mounts[env["HUB_KAFKA__CERT_FILE"]].startswith("brokers/")
    assert mounts[env["HUB_KAFKA__CA_FILE"]] == "ca.pem"
    assert mounts[env["HUB_KAFKA__CREDENTIALS_DIR"]] == "users", "passwords of every principal (SCRAM users)"
    assert "HUB_KAFKA__USERNAME" not in env
    assert "HUB_KAFKA__PASSWORD_FILE" not in env
    # The mutual-TLS listener of every broker (the certificate is refused on the SASL_SSL one).
    internal = {f"{b}:{_listeners(_kafka_properties(services[b]))['INTERNAL'][1]}" for b in BROKERS}
    assert set(env["HUB_KAFKA_BOOTSTRAP"].split(",")) == internal
    assert _depends(job) == dict.fromkeys(BROKERS, "service_healthy")


def test_topics_job_runs_as_admin_with_the_admin_password_only() -> None:
    job = _services()["topics"]
    env = _environment(job)
    assert job["command"] == ["topics", "create"]
    assert env["HUB_WORKER__REPLICATION_FACTOR"] == "3"
    assert env["HUB_KAFKA__USERNAME"] == identity.ADMIN
    assert _pki_mounts(job) == {env["HUB_KAFKA__PASSWORD_FILE"]: "users/admin.password",
                                env["HUB_KAFKA__CA_FILE"]: "ca.pem"}  # fmt: skip
    assert not _env_files(job), "the topics job has no hub secrets"
    assert _depends(job) == {**dict.fromkeys(BROKERS, "service_healthy"),
                             "provision": "service_completed_successfully"}  # fmt: skip


def test_jobs_run_before_every_client_of_the_cluster_and_conditions_fit() -> None:
    services = _services()
    for name, service in services.items():
        for dep, condition in _depends(service).items():
            expected = "service_completed_successfully" if dep in JOBS else "service_healthy"
            assert condition == expected, f"{name} -> {dep}: {condition}"
    for name in (*HUB_SERVICES, "ops-cli", "kafka-ui"):
        assert {*JOBS, *BROKERS} <= _ancestors(name), f"{name} may start before {set(JOBS) - _ancestors(name)}"
        assert _depends(services[name])["topics"] == "service_completed_successfully", name
        for broker in BROKERS:
            assert _depends(services[name])[broker] == "service_healthy", f"{name} -> {broker}"
    for job in JOBS:
        assert services[job].get("restart") == "no", job


# -- each service its own principal and its own secrets --------------------------------------------------


def _catalogue() -> dict[str, identity.Principal]:
    settings = HubSettings()
    return {p.name: p for p in identity.principals(settings.municipality_codes, settings.county_code)}


def _web_inboxes() -> set[str]:
    """The receiver principals of the coordinators in the example web users."""
    users = json.loads(_env_file_variables(_services()["web"])["HUB_WEB__USERS"])
    return {identity.receiver_principal(u["receiver"], u["municipality"]) for u in users.values()
            if u.get("role", "coordinator") == "coordinator"}  # fmt: skip


@pytest.mark.parametrize("name", [n for n in PRINCIPALS if n != "kafka-ui"])
def test_each_hub_service_connects_as_its_own_principal_with_only_its_own_password(name: str) -> None:
    service = _services()[name]
    env = _environment(service)
    principal = PRINCIPALS[name]
    assert principal in _catalogue(), f"{principal} is not a principal of hub.identity"
    assert env["HUB_KAFKA_BOOTSTRAP"] == BOOTSTRAP, name
    assert env.get("HUB_KAFKA__SECURITY_PROTOCOL", "SASL_SSL") == "SASL_SSL", name
    assert env["HUB_KAFKA__USERNAME"] == principal, name
    assert "HUB_KAFKA__PASSWORD" not in {**env, **_env_file_variables(service)}, f"{name}: a password file, please"
    mounts = _pki_mounts(service)
    assert mounts[env["HUB_KAFKA__PASSWORD_FILE"]] == f"users/{principal}.password", name
    assert mounts[env["HUB_KAFKA__CA_FILE"]] == "ca.pem", name
    assert all(v["read_only"] for v in _volumes(service) if v["source"] == PKI_VOLUME), name
    others = {t: s for t, s in mounts.items() if t not in (env["HUB_KAFKA__PASSWORD_FILE"], env["HUB_KAFKA__CA_FILE"])}
    if name != "web":
        assert not others, f"{name} gets more trust material than its own password: {others}"
        return
    # The web app reads each inbox as that inbox's receiver: exactly its coordinators' inboxes.
    folder = PurePosixPath(env["HUB_KAFKA__CREDENTIALS_DIR"])
    inboxes = {PurePosixPath(t).name.removesuffix(".password") for t in others}
    assert all(PurePosixPath(t).parent == folder for t in others), others
    assert all(others[str(folder / f"{p}.password")] == f"users/{p}.password" for p in inboxes), others
    assert inboxes == _web_inboxes(), f"the web app's inbox passwords {inboxes} != its coordinators' inboxes"
    assert all(_catalogue()[p].kind == "receiver" for p in inboxes), inboxes


def test_each_hub_service_gets_only_its_own_hub_secrets() -> None:
    for name, service in _hub_image_services().items():
        inline = SECRET_VARIABLES & set(_environment(service))
        assert not inline, f"{name}: secrets in docker-compose.yml itself: {inline}"
        given = SECRET_VARIABLES & set(_env_file_variables(service))
        own = OWN_SECRETS.get(name, set())
        assert given == own, f"{name} gets {sorted(given)}, needs exactly {sorted(own)}"
    # The worker and the gateway share HUB_SECRET_KEY (the same person keys): one file, read by both.
    sharing = {n for n, s in _services().items() if "deploy/env/secret-key.env" in _env_files(s)}
    assert sharing == {"worker", "ingest"}
    used = {_example(f) for s in _services().values() for f in _env_files(s)}
    for example in _all_env_examples():
        assert example in used, f"{example.name} is used by no service"


def test_no_service_runs_in_development_mode() -> None:
    for name, service in _services().items():
        env = {**_env_file_variables(service), **_environment(service)}
        assert env.get("HUB_ENV", "production") == "production", f"{name}: HUB_ENV={env['HUB_ENV']}"
    for example in _all_env_examples():
        assert "HUB_ENV" not in _read_env_file(example), example.name
    dockerfile_env = dict(re.findall(r"(HUB_[A-Z_]+)=(\S+)", DOCKERFILE.read_text(encoding="utf-8")))
    assert "HUB_ENV" not in dockerfile_env


def test_every_example_secret_is_a_placeholder_the_services_refuse() -> None:
    """An env file copied without editing must not start a service: each secret still says CHANGE-ME."""
    secrets = {*SECRET_VARIABLES, "GF_SECURITY_ADMIN_PASSWORD", "SPRING_SECURITY_USER_PASSWORD"}
    seen: set[str] = set()
    for example in _all_env_examples():
        for key, value in _read_env_file(example).items():
            if key in secrets:
                seen.add(key)
                if key in ("HUB_PSEUDONYM_KEYS", "HUB_INGEST__TOKENS", "HUB_WEB__USERS"):
                    parsed = json.loads(value)
                    assert parsed, f"{example.name}: {key} example is empty"
                assert PLACEHOLDER in value, f"{example.name}: {key} is not a {PLACEHOLDER} placeholder"
    assert seen == secrets - {"HUB_KAFKA__PASSWORD"}


def test_worker_runs_two_replicas_without_a_shared_static_membership_id() -> None:
    worker = _services()["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert "HUB_WORKER__INSTANCE_ID" not in _environment(worker), "replicas would share one static id"
    assert "HUB_WORKER__INSTANCE_ID" not in _env_file_variables(worker)


def test_optional_services_only_under_their_profiles() -> None:
    expected = {"polisen-feed": ["polisen-feed"], "kafka-ui": ["ops"], "ops-cli": ["ops"]}
    for name, service in _services().items():
        command = " ".join(map(str, service.get("command") or []))
        if "polisen-feed" in command:
            assert name == "polisen-feed", f"{name} runs the police feed connector"
        assert service.get("profiles") == expected.get(name), f"{name}: profiles {service.get('profiles')}"


def test_every_service_has_a_healthcheck_or_is_a_documented_exception() -> None:
    no_endpoint = {*JOBS, "ops-cli"}  # one-shot jobs and the on-demand CLI
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
    assert services["worker"]["command"] == ["worker"]
    assert services["ingest"]["command"] == ["ingest"]
    assert services["web"]["command"] == ["web"]
    assert services["polisen-feed"]["command"][:2] == ["connector", "polisen-feed"]


def test_every_hub_variable_is_a_real_setting() -> None:
    valid = valid_hub_variables()
    used = set(re.findall(r"\bHUB_[A-Z0-9_]+", COMPOSE.read_text(encoding="utf-8")))
    used |= set(re.findall(r"\bHUB_[A-Z0-9_]+", DOCKERFILE.read_text(encoding="utf-8")))
    for example in _all_env_examples():
        used |= {k for k in _read_env_file(example) if k.startswith("HUB_")}
    unknown = sorted(used - valid)
    assert not unknown, f"not settings of hub.settings.HubSettings: {unknown}"


@pytest.mark.parametrize("name", [*JOBS, *HUB_SERVICES, "ops-cli"])
def test_each_hub_service_environment_loads_as_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example secrets plus the service's environment parse as HubSettings (types, JSON values)."""
    import os

    for var in list(os.environ):
        if var.startswith("HUB_"):
            monkeypatch.delenv(var)
    service = _services()[name]
    for key, value in {**_env_file_variables(service), **_environment(service)}.items():
        monkeypatch.setenv(key, value)
    settings = HubSettings()
    assert settings.env == "production"
    assert settings.worker.instance_id is None
    if name == "pki":
        return
    assert settings.kafka_bootstrap
    assert settings.kafka.ca_file is not None
    assert settings.kafka.password is None, "Kafka passwords are files"
    has_secret_key = settings.secret_key.get_secret_value() != DEV_SECRET
    assert has_secret_key == (name in ("worker", "ingest")), f"{name}: HUB_SECRET_KEY"
    if name == "worker":
        assert settings.worker.web_host == "0.0.0.0"
        assert settings.worker.web_port in _service_ports(name, service)
        assert settings.pseudonym_keys
    if name == "ingest":
        assert settings.ingest.host == "0.0.0.0"
        assert ("", str(settings.ingest.port), str(settings.ingest.port)) in _published_ports(service)
        assert settings.ingest.tokens
    else:
        assert not settings.ingest.tokens, f"{name}: ingest tokens"
    if name == "web":
        assert settings.web.host == "0.0.0.0"
        assert ("", str(settings.web.port), str(settings.web.port)) in _published_ports(service)
        assert settings.web.session_secret.get_secret_value() != DEV_SECRET
        assert settings.web.users, "the example env file defines web users"
        assert settings.web.worker_metrics_url == "http://worker:6066/metrics"
        assert settings.kafka.credentials_dir is not None
    else:
        assert settings.web.session_secret.get_secret_value() == DEV_SECRET, f"{name}: the web session secret"
        assert not settings.web.users, f"{name}: web users"


# -- operator UIs ----------------------------------------------------------------------------------------


def test_kafka_ui_is_the_maintained_image_behind_login_in_profile_ops_as_operator() -> None:
    ui = _services()["kafka-ui"]
    env = {**_env_file_variables(ui), **_environment(ui)}
    assert str(ui["image"]).startswith("ghcr.io/kafbat/kafka-ui:"), "the maintained fork"
    assert ui.get("profiles") == ["ops"]
    assert env["AUTH_TYPE"] == "LOGIN_FORM"
    assert env["SPRING_SECURITY_USER_NAME"]
    assert PLACEHOLDER in _env_file_variables(ui)["SPRING_SECURITY_USER_PASSWORD"], "login password from env file"
    assert "SPRING_SECURITY_USER_PASSWORD" not in _environment(ui)
    assert env["DYNAMIC_CONFIG_ENABLED"] == "false"
    assert env["KAFKA_CLUSTERS_0_READONLY"] == "true"
    assert env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == BOOTSTRAP
    assert env["KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_CLUSTERS_0_PROPERTIES_SASL_MECHANISM"] == "SCRAM-SHA-512"
    jaas = _uncompose(env["KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG"])
    found = re.fullmatch(r'org\.apache\.kafka\.common\.security\.scram\.ScramLoginModule required '
                         r'username="([^"]+)" password="\$\{([^}]+)\}";', jaas)  # fmt: skip
    assert found, jaas
    assert found.group(1) == PRINCIPALS["kafka-ui"] == identity.OPERATOR
    # The password placeholder is a file of the Spring config tree, mounted from the pki volume.
    tree = env["SPRING_CONFIG_IMPORT"].removeprefix("configtree:")
    mounts = _pki_mounts(ui)
    assert mounts[str(PurePosixPath(tree) / found.group(2))] == f"users/{identity.OPERATOR}.password"
    assert env["KAFKA_CLUSTERS_0_PROPERTIES_SSL_TRUSTSTORE_TYPE"] == "PEM"
    assert mounts[env["KAFKA_CLUSTERS_0_PROPERTIES_SSL_TRUSTSTORE_LOCATION"]] == "ca.pem"
    assert set(mounts.values()) == {"ca.pem", f"users/{identity.OPERATOR}.password"}
    assert [ip for ip, _, _ in _published_ports(ui)] == ["127.0.0.1"]


def test_the_operator_principal_is_read_only() -> None:
    operator = _catalogue()[identity.OPERATOR]
    grants = grants_for(operator, namespace="", app_id=HubSettings().worker.app_id)
    assert grants
    writes = [g for g in grants if g.operation not in ("READ", "DESCRIBE", "DESCRIBE_CONFIGS")]
    assert not writes, f"operator may change things: {writes}"


def test_grafana_has_no_default_admin_password_and_no_anonymous_access() -> None:
    grafana = _services()["grafana"]
    env = _environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env, "the admin password comes from deploy/env/grafana.env"
    password = _env_file_variables(grafana)["GF_SECURITY_ADMIN_PASSWORD"]
    assert PLACEHOLDER in password
    assert password != "admin"


# -- Prometheus and Grafana ------------------------------------------------------------------------------


def test_prometheus_is_mounted_and_scrapes_the_services_on_their_ports() -> None:
    services = _services()
    mounts = [v for v in _volumes(services["prometheus"]) if v["type"] == "bind"]
    assert any(v["source"] == "./deploy/prometheus/prometheus.yml" for v in mounts)
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
    mounts = {v["source"]: v["target"] for v in _volumes(grafana) if v["type"] == "bind"}
    assert {"./deploy/grafana/provisioning", "./deploy/grafana/dashboards"} <= set(mounts)
    provisioning = REPO_ROOT / "deploy" / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert 9090 in _service_ports("prometheus", _services()["prometheus"])
    provider = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text(encoding="utf-8"))
    assert provider["providers"][0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]


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


def test_the_alerting_rules_are_loaded_and_use_only_metrics_the_hub_exposes() -> None:
    mounts = {v["source"]: v["target"] for v in _volumes(_services()["prometheus"]) if v["type"] == "bind"}
    assert mounts.get("./deploy/prometheus/alerts.yml") == "/etc/prometheus/alerts.yml"
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]  # beside prometheus.yml in the container
    rules = yaml.safe_load((PROMETHEUS.parent / "alerts.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert {"HubConsumerLagHigh", "HubDeadLettersRising", "HubAuditChainBroken",
            "HubUnderReplicatedPartitions"} <= set(alerts)  # fmt: skip
    known = _exposed_metric_names() | _PROMETHEUS_BUILTINS
    for name, expr in alerts.items():
        unknown = metric_names_in(expr) - known
        assert not unknown, f"{name}: {expr!r} uses metrics the hub does not expose: {sorted(unknown)}"


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


def test_dockerfile_gives_the_pki_volume_to_the_hub_user() -> None:
    """A new named volume takes the owner of the image's mount point: the pki job (user hub) writes /secrets."""
    target = next(t for t, s in _pki_mounts(_services()["pki"]).items() if s == "")
    runs = " ".join(rest for kw, rest in _dockerfile_instructions() if kw == "RUN")
    assert re.search(rf"mkdir -p [^&]*{re.escape(target)}\b", runs), f"the image does not create {target}"
    assert re.search(rf"chown -R hub:hub [^&]*{re.escape(target)}\b", runs), f"{target} is not the hub user's"
