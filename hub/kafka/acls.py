"""Deny-by-default access rights, generated from the identity catalogue and applied idempotently.

The broker runs ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``: a principal may do
exactly what a binding below allows, nothing else. The rules (docs/security.md has the table):

- a source unit (``polisen``, ``kommun-1381``) and its connectors WRITE only that unit's agency topic;
- the gateway WRITEs the agency topics (each event to the topic of the credential it authenticated);
- the worker READs the agency topics and alone WRITEs deliveries, trails and its internal topics;
- a receiver inbox (``sig-1381``) READs only ``deliver.sig.1381``, with consumer groups ``sig-1381.*``
  (a lägesbild inbox also the two no-personal-data inboxes its indicators follow up: grannsamverkan and
  medborgarlöften of the same municipality);
- operators, and the web app's operations page (it reconciles), READ every topic; the web app reads an
  inbox as that inbox's own principal;
- the tools that show data to a person (the web app as ``web``, ``hub tail`` as an inbox's principal,
  ``hub audit subject`` as ``registrar``, who READs only ``hub.audit``) WRITE ``hub.access``, the reads on
  their way into the trail;
- ``admin`` is the one super user (topics, ACLs, users, repair).

The admin operations aiokafka lacks (ACLs, SCRAM users) use confluent-kafka's AdminClient (librdkafka).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from hub import identity
from hub.identity import Principal
from hub.kafka.clients import KafkaAccess
from hub.topics import Topics

Resource = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID", "BROKER"]
Pattern = Literal["LITERAL", "PREFIXED"]
CLUSTER = "kafka-cluster"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW binding: ``principal`` may do ``operation`` on a resource (any host)."""

    principal: str
    resource: Resource
    pattern: Pattern
    name: str
    operation: str

    def __str__(self) -> str:
        kind = "prefix" if self.pattern == "PREFIXED" else "name"
        return f"User:{self.principal} {self.operation} {self.resource.lower()} {kind} {self.name!r}"


def _topic(p: str, pattern: Pattern, name: str, *ops: str) -> list[Grant]:
    return [Grant(p, "TOPIC", pattern, name, op) for op in ops]


def grants_for(principal: Principal, *, namespace: str, app_id: str) -> list[Grant]:
    """What one principal may do."""
    t = Topics(namespace)
    p = principal.name
    agency_prefix, hub_prefix, deliver_prefix = f"{namespace}agency.", f"{namespace}hub.", f"{namespace}deliver."
    idempotent = Grant(p, "BROKER", "LITERAL", CLUSTER, "IDEMPOTENT_WRITE")
    # The tools that show deliveries, pictures, dead letters or the trail to a person record each read there.
    record_reads = [*_topic(p, "LITERAL", t.access, "WRITE"), idempotent]
    if principal.kind == "admin":
        return []  # a super user (super.users); no binding needed
    if p == identity.WORKER:
        return [
            *_topic(p, "PREFIXED", agency_prefix, "READ", "DESCRIBE", "DESCRIBE_CONFIGS", "CREATE"),
            *_topic(p, "PREFIXED", hub_prefix, "ALL"),
            *_topic(p, "PREFIXED", deliver_prefix, "ALL"),
            # its consumer group and one transactional id per worker instance (``<app id>-<instance>``); its
            # state lives on hub.* topics (no faust changelog or assignor topics: faust's Kafka clients are off)
            Grant(p, "GROUP", "PREFIXED", app_id, "ALL"),
            Grant(p, "TRANSACTIONAL_ID", "PREFIXED", app_id, "ALL"),
            idempotent,
            Grant(p, "BROKER", "LITERAL", CLUSTER, "DESCRIBE"),
        ]
    if p in (identity.GATEWAY, identity.SIMULATOR):
        return [*_topic(p, "PREFIXED", agency_prefix, "WRITE", "DESCRIBE"), idempotent]
    if p == identity.REGISTRAR:  # the audit trail, to read a person's decisions from, and the extract's record
        return [*_topic(p, "LITERAL", t.audit, "READ", "DESCRIBE"), *record_reads]
    if principal.kind == "operator" or p == identity.WEB:
        everything: tuple[Pattern, str] = ("PREFIXED", namespace) if namespace else ("LITERAL", "*")
        return [
            *_topic(p, everything[0], everything[1], "READ", "DESCRIBE", "DESCRIBE_CONFIGS"),
            Grant(p, "GROUP", everything[0], everything[1], "DESCRIBE"),
            Grant(p, "GROUP", "PREFIXED", f"{p}.", "READ"),
            Grant(p, "BROKER", "LITERAL", CLUSTER, "DESCRIBE"),
            *(record_reads if p == identity.WEB else []),  # operators stay read-only (Kafka UI runs as one)
        ]
    if principal.kind in ("agency", "connector") and principal.unit is not None:
        return [*_topic(p, "LITERAL", t.unit(principal.unit), "WRITE", "DESCRIBE"), idempotent]
    if principal.kind == "receiver" and principal.receiver and principal.municipality:
        code = principal.municipality
        readable = [principal.receiver]
        if principal.receiver == "lagesbild":  # its follow-up indicators read these two no-personal-data inboxes
            readable += ["grannsamverkan", "medborgarloften"]
        return [
            *(g for r in readable for g in _topic(p, "LITERAL", t.deliver(r, code), "READ", "DESCRIBE")),
            Grant(p, "GROUP", "PREFIXED", f"{p}.", "READ"),
            *record_reads,
        ]
    raise ValueError(f"no access rule for principal {p!r} ({principal.kind})")


def desired_grants(principals: Iterable[Principal], *, namespace: str, app_id: str) -> list[Grant]:
    return sorted({g for pr in principals for g in grants_for(pr, namespace=namespace, app_id=app_id)})


# -- applying them ----------------------------------------------------------------------------------------


def _admin_client(access: KafkaAccess) -> object:
    from confluent_kafka.admin import AdminClient

    return AdminClient({**access.librdkafka_config(), "log_level": 3})


def _binding(g: Grant) -> object:
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return AclBinding(ResourceType[g.resource], g.name, ResourcePatternType[g.pattern], f"User:{g.principal}", "*",
                      AclOperation[g.operation], AclPermissionType.ALLOW)


def current_grants(access: KafkaAccess, timeout_s: float = 30.0) -> list[Grant]:
    """Every ALLOW binding for a ``User:`` principal on the cluster."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    client = _admin_client(access)
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                           AclPermissionType.ANY)
    found = client.describe_acls(flt, request_timeout=timeout_s).result(timeout=timeout_s)  # type: ignore[attr-defined]
    out: list[Grant] = []
    for b in found:
        if not b.principal.startswith("User:") or b.permission_type.name != "ALLOW":
            continue
        out.append(Grant(b.principal[5:], b.restype.name, b.resource_pattern_type.name, b.name, b.operation.name))
    return sorted(out)


def _in_scope(g: Grant, namespace: str, app_id: str) -> bool:
    """Whether a binding belongs to the hub of ``namespace`` (several hubs, e.g. test runs, share a cluster:
    applying one hub's ACLs never removes another's)."""
    if g.resource == "BROKER" or (g.resource == "GROUP" and g.name == f"{g.principal}."):
        return True  # the same for every hub
    if namespace:
        return g.name.startswith(namespace) or g.name.startswith(app_id)
    return g.name.startswith(("agency.", "hub.", "deliver.", app_id)) or g.name == "*"


@dataclass
class AclChange:
    created: list[Grant]
    deleted: list[Grant]
    kept: int


def apply_grants(access: KafkaAccess, principals: list[Principal], *, namespace: str, app_id: str,
                 timeout_s: float = 30.0) -> AclChange:
    """Make the cluster's bindings for these principals exactly the desired ones (create the missing, delete
    any other binding of a catalogued principal). Idempotent."""
    from confluent_kafka.admin import AclBindingFilter, AclPermissionType

    desired = set(desired_grants(principals, namespace=namespace, app_id=app_id))
    names = {p.name for p in principals}
    have = {g for g in current_grants(access, timeout_s)
            if g.principal in names and _in_scope(g, namespace, app_id)}
    missing = sorted(desired - have)
    extra = sorted(have - desired)
    client = _admin_client(access)
    if missing:
        futures = client.create_acls([_binding(g) for g in missing], request_timeout=timeout_s)  # type: ignore[attr-defined]
        for fut in futures.values():
            fut.result(timeout=timeout_s)
    if extra:
        from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

        filters = [AclBindingFilter(ResourceType[g.resource], g.name, ResourcePatternType[g.pattern],
                                    f"User:{g.principal}", "*", AclOperation[g.operation], AclPermissionType.ALLOW)
                   for g in extra]
        for fut in client.delete_acls(filters, request_timeout=timeout_s).values():  # type: ignore[attr-defined]
            fut.result(timeout=timeout_s)
    _wait_visible(access, set(missing), set(extra), timeout_s)
    return AclChange(missing, extra, len(desired) - len(missing))


def _wait_visible(access: KafkaAccess, created: set[Grant], deleted: set[Grant], timeout_s: float) -> None:
    """Until the broker answers with the new bindings: the controller has committed them when CreateAcls
    returns, but a broker applies them when it replays the metadata log, and a client started at once
    would be refused."""
    if not created and not deleted:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        now = set(current_grants(access, timeout_s))
        if created <= now and not (deleted & now):
            return
        if time.monotonic() > deadline:
            missing = len(created - now)
            raise TimeoutError(f"the broker did not show {missing} new ACL binding(s) within {timeout_s:g} s")
        time.sleep(0.1)


# -- SCRAM users ------------------------------------------------------------------------------------------


def scram_users(access: KafkaAccess, timeout_s: float = 30.0) -> set[str]:
    """The user names that have a SCRAM credential on the cluster."""
    client = _admin_client(access)
    futures = client.describe_user_scram_credentials(request_timeout=timeout_s)  # type: ignore[attr-defined]
    if isinstance(futures, dict):
        result = {u: f.result(timeout=timeout_s) for u, f in futures.items()}
    else:
        result = futures.result(timeout=timeout_s)
    return set(result)


def upsert_scram_users(access: KafkaAccess, passwords: dict[str, str], *, mechanism: str = "SCRAM-SHA-512",
                       iterations: int = 8192, timeout_s: float = 30.0) -> list[str]:
    """Create or replace the SCRAM credential of each user (rotation is the same call); returns the names."""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    if not passwords:
        return []
    mech = ScramMechanism[mechanism.replace("-", "_")]
    alterations = [UserScramCredentialUpsertion(user, ScramCredentialInfo(mech, iterations), pw.encode())
                   for user, pw in sorted(passwords.items())]
    client = _admin_client(access)
    futures = client.alter_user_scram_credentials(alterations, request_timeout=timeout_s)  # type: ignore[attr-defined]
    for fut in futures.values():
        fut.result(timeout=timeout_s)
    return sorted(passwords)
