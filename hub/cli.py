"""The ``hub`` command: parse arguments, call the module that does the work, print the result.

Readable text for people; ``--json`` where a program reads the output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.settings import HubSettings, get_settings

if TYPE_CHECKING:
    from connectors.base import Connector
    from hub.kafka.clients import KafkaAccess

STATUS_PORT_HELP = "serve /health, /ready, /metrics and /progress on this port (default: HUB_CONNECTOR__STATUS_PORT)"

Handler = Callable[[argparse.Namespace, HubSettings], int]


def _print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False, default=str))


# -- hub kafka ----------------------------------------------------------------------------------------


def _kafka_up(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.kafka.cluster import LocalCluster, local_kafka
    from hub.kafka.local import BrokerError
    from hub.kafka.shape import forget_shape, read_shape

    if settings.kafka_bootstrap:
        print(f"HUB_KAFKA_BOOTSTRAP is set; using the existing cluster at {settings.kafka_bootstrap}")
        return 0
    try:
        current = local_kafka(settings)
        if args.nodes is not None and args.nodes != (len(current.nodes) if isinstance(current, LocalCluster) else 1):
            if current.pid() is not None:
                raise BrokerError(f"a {'cluster' if read_shape(settings.kafka_home) else 'single node'} runs in "
                                  f"{settings.kafka_home}: `hub kafka down` first")  # fmt: skip
            if args.nodes > 1 and (settings.kafka_home / "data" / "meta.properties").exists():
                raise BrokerError(f"{settings.kafka_home} holds a single node's data; remove {settings.kafka_home} "
                                  "(local data) to start a cluster there, or set HUB_LOCAL_KAFKA__HOME")  # fmt: skip
            if args.nodes <= 1:
                forget_shape(settings.kafka_home)
        broker = local_kafka(settings, args.nodes)
        size = f"{len(broker.nodes)} nodes" if isinstance(broker, LocalCluster) else "one node"
        print(f"starting Apache Kafka {broker.version} (KRaft, {size}) in {broker.home} ...", file=sys.stderr)
        bootstrap = broker.up()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(bootstrap)
    return 0


def _kafka_down(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.kafka.cluster import local_kafka

    broker = local_kafka(settings)
    stopped = broker.down()
    print("stopped" if stopped else "not running")
    return 0


def _kafka_node(args: argparse.Namespace, settings: HubSettings) -> int:
    """``hub kafka stop-node N`` (kill -9, as a crash) and ``start-node N`` on a local cluster."""
    from hub.kafka.cluster import LocalCluster, local_kafka
    from hub.kafka.local import BrokerError

    cluster = local_kafka(settings)
    if not isinstance(cluster, LocalCluster):
        print("error: no local cluster here (`hub kafka up --nodes 3` starts one)", file=sys.stderr)
        return 2
    try:
        if args.kafka_command == "stop-node":
            print("killed" if cluster.stop_node(args.node) else "not running")
        else:
            cluster.start_node(args.node)
            print(f"node {args.node} runs at {cluster.node(args.node).bootstrap}")
    except (ValueError, BrokerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    return 0


def _kafka_status(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.kafka.cluster import local_kafka

    status = local_kafka(settings).status()
    if args.json:
        _print_json(status.as_dict())
    elif status.running:
        print(f"running: Apache Kafka {status.version} at {status.bootstrap} "
              f"(pid {status.pid}, {status.home})")
    else:
        print(f"not running (home {status.home})")
    return 0 if status.running else 3


def _kafka_client_config(args: argparse.Namespace, settings: HubSettings) -> int:
    """A Java client properties file (with the principal's password) for Kafka's own tools."""
    from hub import identity
    from hub.kafka.clients import KafkaAccessError, access_as

    try:
        access = access_as(settings, args.principal or settings.kafka.username or identity.ADMIN)
    except KafkaAccessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(access.java_properties(), end="")
    return 0


def _kafka_pki(args: argparse.Namespace, settings: HubSettings) -> int:
    """CA, broker keystores and a password per principal into DIR (the compose ``pki`` job)."""
    from hub.kafka.pki import Pki
    from hub.kafka.provision import catalogue

    pki = Pki(Path(args.directory))
    pki.ensure_ca()
    for host in args.host or ["127.0.0.1"]:
        pki.ensure_broker(host)
    for principal in catalogue(settings):
        pki.ensure_password(principal.name)
    print(f"trust material in {pki.root}: CA {pki.ca_file}, {len(args.host or [1])} broker keystore(s), "
          f"{len(catalogue(settings))} principals")
    return 0


def _kafka_provision(args: argparse.Namespace, settings: HubSettings) -> int:
    """SCRAM users for every principal (passwords from the credentials folder) and the ACLs."""
    from hub import identity
    from hub.kafka.clients import credentials_dir
    from hub.kafka.pki import Pki
    from hub.kafka.provision import provision_local

    access = resolve_access(settings, identity.ADMIN)
    done = provision_local(access, Pki(credentials_dir(settings).parent), settings)
    print(f"{len(done.users_created)} SCRAM users created; ACLs: {len(done.acls.created)} created, "
          f"{len(done.acls.deleted)} removed, {done.acls.kept} kept")
    return 0


def _kafka_rotate(args: argparse.Namespace, settings: HubSettings) -> int:
    """A new random password for one principal: written to its password file, then set on the broker."""
    import secrets

    from hub import identity
    from hub.kafka.acls import upsert_scram_users
    from hub.kafka.clients import credentials_dir
    from hub.kafka.pki import Pki
    from hub.kafka.provision import catalogue

    names = {p.name for p in catalogue(settings)}
    if args.principal not in names:
        print(f"error: unknown principal {args.principal!r} (see `hub acl show --desired`)", file=sys.stderr)
        return 2
    access = resolve_access(settings, identity.ADMIN)
    password = secrets.token_urlsafe(48)
    upsert_scram_users(access, {args.principal: password}, mechanism=settings.kafka.sasl_mechanism)
    Pki(credentials_dir(settings).parent).set_password(args.principal, password)
    print(f"rotated the password of {args.principal}: {credentials_dir(settings) / (args.principal + '.password')}; "
          "restart the processes that connect as it")
    return 0


#: Kafka's own command-line tools by their script names (``bin/kafka-acls.sh`` → ``kafka-acls``).
KAFKA_TOOLS = {
    "kafka-acls": "org.apache.kafka.tools.AclCommand",
    "kafka-configs": "org.apache.kafka.tools.ConfigCommand",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
}


def _kafka_tool(args: argparse.Namespace, settings: HubSettings) -> int:
    """One of Kafka's own tools from the pinned release, e.g. with ``--command-config`` from client-config."""
    import subprocess

    from hub.kafka.cluster import local_kafka
    from hub.kafka.local import TOOLS_LOG4J_CONFIG, BrokerError

    try:
        classpath = local_kafka(settings).classpath()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cmd = ["java", "-Xmx256m", f"-Dlog4j2.configurationFile={TOOLS_LOG4J_CONFIG}", "-cp", classpath,
           KAFKA_TOOLS[args.tool], *args.tool_args]
    return subprocess.run(cmd, check=False).returncode


def _kafka_logs(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.kafka.cluster import local_kafka

    print(local_kafka(settings).log_tail(args.lines))
    return 0


# -- hub schemas --------------------------------------------------------------------------------------


def _schemas_check(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.contract.compat import check_schemas_dir
    from hub.contract.errors import SchemaError

    try:
        problems = check_schemas_dir(settings.schemas_dir)
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _print_json([p.as_dict() for p in problems])
    elif problems:
        for p in problems:
            print(p.describe())
    else:
        print(f"schemas in {settings.schemas_dir} are BACKWARD-transitive compatible")
    return 1 if problems else 0


def _schemas_docs(args: argparse.Namespace, settings: HubSettings) -> int:
    from pathlib import Path

    from connectors.gateway.openapi import is_up_to_date as openapi_is_up_to_date
    from connectors.gateway.openapi import write_openapi
    from hub.contract.docs import is_up_to_date, write_events_md
    from hub.contract.registry import SchemaRegistry

    registry = SchemaRegistry(settings.schemas_dir)
    path = Path(args.output) if args.output else settings.schemas_dir.parent / "docs" / "events.md"
    openapi = path.parent / "ingest-openapi.json"
    if args.check:
        stale = [p for p, ok in ((path, is_up_to_date(registry, path)), (openapi, openapi_is_up_to_date(openapi)))
                 if not ok]
        for p in stale:
            print(f"{p} is out of date; run `hub schemas docs`", file=sys.stderr)
        if not stale:
            print(f"{path} and {openapi} are up to date")
        return 1 if stale else 0
    print(f"{'wrote' if write_events_md(registry, path) else 'unchanged'} {path}")
    write_openapi(openapi)
    print(f"wrote {openapi}")
    return 0


def _add_schemas_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schemas = sub.add_parser("schemas", help="the Avro event contract: compatibility check, generated docs")
    ssub = schemas.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    chk = ssub.add_parser("check", help="BACKWARD-transitive compatibility of every schema (exit 1 if not)")
    chk.add_argument("--json", action="store_true", help="the incompatibilities as one JSON list")
    chk.set_defaults(handler=_schemas_check)
    docs = ssub.add_parser("docs", help="regenerate docs/events.md and docs/ingest-openapi.json from the contract")
    docs.add_argument("--check", action="store_true", help="only check; exit 1 when out of date")
    docs.add_argument("--output", help="file to write (default: docs/events.md beside schemas/)")
    docs.set_defaults(handler=_schemas_docs)


# -- hub worker / hub topics -----------------------------------------------------------------------


def ensure_kafka(settings: HubSettings) -> None:
    """Exit with one line unless HUB_KAFKA_BOOTSTRAP is set or the local broker runs."""
    from hub.kafka.cluster import local_kafka

    if not settings.kafka_bootstrap and local_kafka(settings).pid() is None:
        raise SystemExit("error: no Kafka: set HUB_KAFKA_BOOTSTRAP or start the local broker with `hub kafka up`")


def resolve_access(settings: HubSettings, role: str) -> KafkaAccess:
    """How this command connects: HUB_KAFKA_BOOTSTRAP, else the local broker (which must be running), as
    ``HUB_KAFKA__USERNAME`` or else the command's ``role`` principal. Exits with one line when it cannot."""
    from hub.kafka.clients import KafkaAccessError, access_for

    ensure_kafka(settings)
    try:
        return access_for(settings, role)
    except KafkaAccessError as exc:
        raise SystemExit(f"error: {exc}") from None


def require_secrets(settings: HubSettings, service: str) -> None:
    """Exit non-zero with one line naming the setting when a secret of ``service`` is weak (not in dev)."""
    from hub.secrets import WeakSecretError, require_strong_secrets

    try:
        require_strong_secrets(settings, service)
    except WeakSecretError as exc:
        raise SystemExit(f"error: {exc}") from None


def refused(exc: BaseException) -> str | None:
    """One line for a broker's refusal (authentication or authorisation), or None for other errors."""
    from aiokafka.errors import (
        ClusterAuthorizationFailedError,
        GroupAuthorizationFailedError,
        TopicAuthorizationFailedError,
    )

    name = type(exc).__name__
    if isinstance(exc, TopicAuthorizationFailedError | GroupAuthorizationFailedError
                  | ClusterAuthorizationFailedError):
        return f"the broker refused access: this principal may not read or write that topic ({name})"
    if "Authentication" in name or "Sasl" in name or "SSL" in name:
        return f"the broker refused the credentials ({name})"
    return None


def _worker(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub import identity
    from hub.worker.processes import run

    require_secrets(settings, "worker")
    return run(settings, resolve_access(settings, identity.WORKER), loglevel=args.loglevel, processes=args.processes)


def _topics_create(args: argparse.Namespace, settings: HubSettings) -> int:
    import asyncio

    from hub import identity
    from hub.kafka.admin import TopicCreationError, ensure_topics, hub_topics, replication_below, replication_policy
    from hub.kafka.provision import apply_acls

    access = resolve_access(settings, identity.ADMIN)
    specs, policy = hub_topics(settings), asyncio.run(replication_policy(access, settings))
    rf = policy.factor
    try:
        created = asyncio.run(ensure_topics(access, specs, policy))
    except TopicCreationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created {len(created)} topics with replication factor {rf}, min.insync.replicas {policy.min_insync}"
          if created else "all topics exist")  # fmt: skip
    low = asyncio.run(replication_below(access, specs, rf))
    for name, factor in sorted(low.items()):
        print(f"warning: {name} has replication factor {factor}, below HUB_WORKER__REPLICATION_FACTOR={rf} "
              "(Kafka cannot raise it in place: reassign its partitions)", file=sys.stderr)
    change = apply_acls(access, settings)
    print(f"ACLs: {len(change.created)} created, {len(change.deleted)} removed, {change.kept} kept")
    return 0


def _topics_show(args: argparse.Namespace, settings: HubSettings) -> int:
    """Each topic's data class, retention and why; with the broker's actual setting when it is reachable."""
    from hub.kafka.admin import hub_topics

    specs = hub_topics(settings)
    actual: dict[str, dict[str, str]] = {}
    if not args.offline:
        from hub import identity
        from hub.kafka.topic_config import current_configs

        actual = current_configs(resolve_access(settings, identity.ADMIN), [s.name for s in specs])
    rows: list[dict[str, Any]] = []
    for spec in specs:
        r = spec.retention
        assert r is not None  # noqa: S101 - every hub topic has a retention
        have = actual.get(spec.name)
        rows.append({"topic": spec.name, "class": r.data_class, "retention": r.shown, "retention_ms": r.retention_ms,
                     "compacted": r.compacted, "why": r.why,
                     "on_broker": None if have is None else have, "as_configured": (
                         None if have is None else all(have.get(k) == v for k, v in spec.config.items()))})
    if args.json:
        _print_json(rows)
        return 0
    width = max(len(r["topic"]) for r in rows)
    for row in rows:
        flag = "" if row["as_configured"] in (None, True) else "   ← differs on the broker: run `hub topics apply`"
        print(f"{row['topic']:<{width}}  {row['class']:<10}  {row['retention']:<26}  {row['why']}{flag}")
    return 0


def _topics_apply(args: argparse.Namespace, settings: HubSettings) -> int:
    """Correct the retention (and cleanup policy) of existing topics to what their purpose allows."""
    from hub import identity
    from hub.kafka.admin import hub_topics
    from hub.kafka.topic_config import apply_corrections, corrections, current_configs

    access = resolve_access(settings, identity.ADMIN)
    specs = hub_topics(settings)
    fixes = corrections(specs, current_configs(access, [s.name for s in specs]))
    apply_corrections(access, fixes)
    for fix in fixes:
        print(f"{fix.topic}: {fix.key} {fix.was} -> {fix.now}")
    print(f"{len(fixes)} setting(s) corrected" if fixes else "every topic is as configured")
    return 0


# -- hub acl ------------------------------------------------------------------------------------------


def _acl_apply(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub import identity
    from hub.kafka.provision import apply_acls

    change = apply_acls(resolve_access(settings, identity.ADMIN), settings)
    if args.json:
        _print_json({"created": [str(g) for g in change.created], "deleted": [str(g) for g in change.deleted],
                     "kept": change.kept})
    else:
        for g in change.created:
            print(f"+ {g}")
        for g in change.deleted:
            print(f"- {g}")
        print(f"{len(change.created)} created, {len(change.deleted)} removed, {change.kept} unchanged")
    return 0


def _acl_show(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub import identity
    from hub.kafka.acls import current_grants, desired_grants
    from hub.kafka.provision import catalogue

    if args.desired:
        grants = desired_grants(catalogue(settings), namespace=settings.topic_namespace,
                                app_id=settings.worker.app_id)
    else:
        grants = current_grants(resolve_access(settings, identity.ADMIN))
    if args.principal:
        grants = [g for g in grants if g.principal == args.principal]
    if args.json:
        _print_json([{"principal": g.principal, "resource": g.resource, "pattern": g.pattern, "name": g.name,
                      "operation": g.operation} for g in grants])
    else:
        for g in grants:
            print(g)
    return 0


def _audit_verify(args: argparse.Namespace, settings: HubSettings) -> int:
    import asyncio

    from hub import identity
    from hub.audit import TrailError, read_trail, verify
    from hub.audit_anchor import AnchorError, FileAnchors
    from hub.audit_seal import sealer_from
    from hub.topics import Topics

    topic = Topics(settings.topic_namespace).audit
    store = FileAnchors(args.anchors or settings.audit_anchor_dir)
    try:
        trail = asyncio.run(read_trail(resolve_access(settings, identity.OPERATOR), topic))
        anchors = {p: store.read(p) for p in store.partitions()}
        result = verify(trail, sealer_from(settings), anchors, settings.audit.checkpoint_every)
    except (TrailError, AnchorError) as exc:
        print(f"BROKEN: {exc}")
        return 1
    b = result.first_break
    if args.json:
        _print_json({"ok": result.ok, "records": result.records, "partitions": result.partitions,
                     "checkpoints": result.checkpoints, "macs_checked": result.macs, "anchored": result.anchored,
                     "unanchored": result.unanchored, "anchor_dir": str(store.directory),
                     "first_break": str(b) if b else None,
                     "break": None if b is None else {"partition": b.partition, "offset": b.offset, "seq": b.seq,
                                                      "why": b.why}})  # fmt: skip
    elif result.ok:
        print(f"ok: {result.records} audit records in {result.partitions} partition(s) of {topic}: chains intact, "
              f"{result.macs} MACs and {result.checkpoints} signed checkpoints valid, {result.anchored} anchored "
              f"checkpoints found ({result.unanchored} not anchored yet)")  # fmt: skip
    else:
        print(f"BROKEN at {b} ({result.records} records read)")
    return 0 if result.ok else 1


def _audit_subject(args: argparse.Namespace, settings: HubSettings) -> int:
    """``hub audit subject``: the register extract of one person (:mod:`hub.register_extract`)."""
    import asyncio
    import getpass

    from aiokafka.errors import KafkaError

    from hub import identity
    from hub.access import AccessLog, Read
    from hub.audit import TrailError, read_trail
    from hub.contract.outputs import AccessChannel, AuditRecord
    from hub.contract.personnummer import PersonnummerError, normalise
    from hub.pseudonym import Pseudonymiser
    from hub.register_extract import Extract, as_html, as_json, as_table, build
    from hub.topics import Topics

    # Never from argv (it would be in the shell's history and the process list), never echoed or logged.
    text = getpass.getpass("personnummer: ") if sys.stdin.isatty() else sys.stdin.readline()
    try:
        person_key = Pseudonymiser(settings).person_key(normalise(text))
    except PersonnummerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    del text
    topics = Topics(settings.topic_namespace)
    kafka = resolve_access(settings, identity.REGISTRAR)

    async def run() -> Extract:
        trail = await read_trail(kafka, topics.audit)
        extract = build((r for _p, _o, r in trail if isinstance(r, AuditRecord)), person_key)
        reads = AccessLog(kafka, topics)
        try:  # the extract is itself a read of the trail about this person: recorded before it is shown
            await reads.record(Read(kafka.principal or identity.REGISTRAR, AccessChannel.cli_audit_subject,
                                    topics.audit, subject=person_key), items=len(extract.events))  # fmt: skip
        finally:
            await reads.stop()
        return extract

    try:
        extract = asyncio.run(run())
    except TrailError as exc:
        print(f"error: the audit trail is not readable: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(f"error: {refused(exc) or f'Kafka: {type(exc).__name__}'} (nothing is shown: the extract could not "
              "be recorded)", file=sys.stderr)  # fmt: skip
        return 1
    if args.html is not None:
        args.html.write_text(as_html(extract), encoding="utf-8")
    if args.json:
        _print_json(as_json(extract))
    else:
        print(as_table(extract))
        if args.html is not None:
            print(f"report: {args.html}")
    return 0


def _audit_keygen(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.audit_seal import keygen

    keys = keygen()
    text = "".join(f"{k}={v}\n" for k, v in keys.items())
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out: Path = args.out
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"{out} exists: not overwritten (a new key would make the trail's old MACs unverifiable)",
              file=sys.stderr)
        return 1
    with os.fdopen(fd, "w") as f:
        f.write(text)
    print(f"wrote {out} (mode 0600): HUB_AUDIT__MAC_KEY, HUB_AUDIT__SIGNING_KEY, HUB_AUDIT__VERIFY_KEY; "
          f"the public key: {keys['HUB_AUDIT__VERIFY_KEY']}")
    return 0


def _reconcile(args: argparse.Namespace, settings: HubSettings) -> int:
    import asyncio

    from hub import identity
    from hub.reconcile import reconcile

    r = asyncio.run(reconcile(resolve_access(settings, identity.OPERATOR), settings))
    if args.repair and r.lost:
        from hub.reconcile import repair

        # Re-publishing into the agency topics is the administrator's (no agency unit may write another's).
        sent = asyncio.run(repair(resolve_access(settings, identity.ADMIN), r.lost_at))
        print(f"re-published {sent} unaccounted source message(s); run `hub reconcile` again shortly",
              file=sys.stderr)
    if args.json:
        _print_json(r.as_dict())
    else:
        print(f"source messages   {r.source_messages:>10}  ({r.source_event_ids} distinct event ids)")
        print(f"accounted         {r.accounted:>10}")
        print(f"lost              {r.lost:>10}" + (f"  e.g. {', '.join(r.lost_examples[:3])}" if r.lost else ""))
        print(f"deliveries        {r.deliveries:>10}  ({r.duplicate_deliveries} duplicates)")
        print(f"without a record  {r.unaudited_deliveries:>10}  (deliveries without their 'delivered' audit record)")
        print(f"without delivery  {r.undelivered_audit_records:>10}  ('delivered' audit records without their "
              f"delivery; {r.audit_records_beyond_retention} more older than the delivery retention)")
        for example in r.crosscheck_examples[:3]:
            print(f"  e.g. {example}")
        for decision, n in sorted(r.decisions.items()):
            print(f"audit {decision:<11} {n:>10}")
        for reason, n in sorted(r.deadletters.items()):
            print(f"dead letter {reason:<22} {n:>6}")
    return 0 if r.ok else 1


# -- hub tail -----------------------------------------------------------------------------------------


def _tail(args: argparse.Namespace, settings: HubSettings) -> int:
    import asyncio

    from aiokafka.errors import KafkaError

    from hub.kafka.clients import KafkaAccessError
    from hub.tail import TailOptions, access_for_inbox, reveal_refusal, tail

    options = TailOptions(args.receiver, args.municipality, args.from_beginning, args.json, args.max,
                          args.timeout, args.reveal)  # fmt: skip
    try:
        refusal = reveal_refusal(settings, options)
        if refusal:
            print(f"error: {refusal}", file=sys.stderr)
            return 2
        ensure_kafka(settings)
        asyncio.run(tail(settings, access_for_inbox(settings, options), options))
    except (ValueError, KafkaAccessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"error: {refused(exc) or f'Kafka: {type(exc).__name__}'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


# -- hub simulate / hub connector ------------------------------------------------------------------


def _simulate(args: argparse.Namespace, settings: HubSettings) -> int:
    from connectors.simulator.connector import SimulatorConnector

    ensure_kafka(settings)
    require_secrets(settings, "connector")
    progress = SimulatorConnector(settings, rate=args.rate, duration_s=args.duration, seed=args.seed,
                                  clock=args.clock).run_sync()  # fmt: skip
    _print_json(progress)
    return 0


def _polisen_feed(args: argparse.Namespace, settings: HubSettings) -> int:
    from connectors.polisen_feed.connector import PolisenFeedConnector

    ensure_kafka(settings)
    require_secrets(settings, "polisen-feed")
    connector = PolisenFeedConnector(settings, base_url=args.base_url, polls=args.polls,
                                     min_interval_s=max(10.0, args.interval))  # fmt: skip
    return _run_connector(connector, args, settings)


def _run_connector(connector: Connector, args: argparse.Namespace, settings: HubSettings) -> int:
    """Run a connector until it is done or stopped, with /health, /ready and /metrics if a port is set."""
    import asyncio

    from connectors.status import StatusEndpointError, execute_with_status

    port = args.status_port if args.status_port is not None else settings.connector.status_port
    try:
        _print_json(asyncio.run(execute_with_status(connector, settings.connector.status_host, port)))
    except StatusEndpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


# -- hub lagesbild -----------------------------------------------------------------------------------


def _lagesbild(args: argparse.Namespace, settings: HubSettings) -> int:
    import asyncio

    from hub import identity, report

    if args.rebuild:
        from hub.lagesbild_rebuild import WorkersRunning, rebuild

        try:  # the rebuild writes what the worker writes, as the worker
            _print_json(asyncio.run(rebuild(settings, resolve_access(settings, identity.WORKER))).as_dict())
        except WorkersRunning as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.municipality is None:
        print("error: give a municipality code (e.g. 1381) or 13 for the county", file=sys.stderr)
        return 2
    # Read as the lägesbild inbox of that municipality (or the county): lagesbild-1381, lagesbild-13.
    kafka = resolve_access(settings, identity.receiver_principal("lagesbild", args.municipality))
    if args.indicators:
        _print_json(asyncio.run(report.indicators(settings, kafka, args.municipality)))
        return 0
    rows = asyncio.run(report.load(settings, kafka, args.municipality, args.period_kind))
    rows = report.select(rows, args.since, args.until, args.category)
    if args.png:
        from dataclasses import replace

        from hub.charts import weekly_chart
        from hub.web.labels import category

        swedish = [replace(r, category=category(r.category)) for r in rows]
        args.png.write_bytes(weekly_chart(swedish, f"Lägesbild {args.municipality}"))
        print(f"wrote {args.png}")
    elif args.json:
        print(report.as_json(rows))
    elif args.csv:
        print(report.as_csv(rows), end="")
    else:
        print(report.as_table(rows, args.municipality))
    return 0


def _filedrop(args: argparse.Namespace, settings: HubSettings) -> int:
    from connectors.filedrop.connector import FileDropConnector, UnsafeFolderError

    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"error: drop folder {directory} does not exist", file=sys.stderr)
        return 2
    ensure_kafka(settings)
    require_secrets(settings, "connector")
    try:
        connector = FileDropConnector(settings, agency=args.agency, directory=directory, once=args.once,
                                      poll_interval_s=max(0.2, args.interval))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_connector(connector, args, settings)
    except UnsafeFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# -- hub demo -----------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.demo import run_demo

    return run_demo(settings, args.duration, args.rate, args.seed)


# -- hub web ------------------------------------------------------------------------------------------


def _web(args: argparse.Namespace, settings: HubSettings) -> int:
    if args.new_user:
        from hub.web import new_user_entry

        if args.role == "coordinator" and not (args.receiver and args.municipality):
            print("error: a coordinator needs --receiver and --municipality", file=sys.stderr)
            return 2
        password, entry = new_user_entry(args.role, args.receiver, args.municipality)
        _print_json({"user": args.new_user, "password": password, "entry": entry})
        return 0
    from hub.web import run_web

    ensure_kafka(settings)
    require_secrets(settings, "web")
    return run_web(settings, host=args.host, port=args.port)


# -- hub ingest ---------------------------------------------------------------------------------------


def _ingest(args: argparse.Namespace, settings: HubSettings) -> int:
    if args.new_token:
        from datetime import datetime

        from connectors.gateway import new_token
        from hub.identity import parse_unit

        try:
            unit = parse_unit(args.new_token, settings.municipality_codes)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        token, entry = new_token(datetime.fromisoformat(args.expires) if args.expires else None)
        _print_json({"unit": unit.name, "token": token, "entry": entry})
        return 0
    from connectors.gateway import run

    require_secrets(settings, "ingest")
    return run(settings, host=args.host, port=args.port)


# -- parser -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hub",
        description="Samverkan Hub: lawful event sharing between police, prison service and municipalities.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kafka = sub.add_parser("kafka", help="the local Apache Kafka broker (KRaft) for development and tests")
    ksub = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    kup = ksub.add_parser("up", help="start the broker, or a cluster (idempotent); prints the bootstrap address")
    kup.add_argument("--nodes", type=int, default=None, metavar="N",
                     help="N combined broker+controller nodes (3: replication 3, min.insync.replicas 2); default: "
                          "the shape last started here, else 1")  # fmt: skip
    kup.set_defaults(handler=_kafka_up)
    ksub.add_parser("down", help="stop the broker (every node) cleanly").set_defaults(handler=_kafka_down)
    for action, what in (("stop-node", "kill -9 node N of the local cluster (a crash)"),
                         ("start-node", "start node N of the local cluster again; returns once it is back")):
        kn = ksub.add_parser(action, help=what)
        kn.add_argument("node", type=int, metavar="N")
        kn.set_defaults(handler=_kafka_node)
    st = ksub.add_parser("status", help="running or not, and where (exit 3 when not running)")
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(handler=_kafka_status)
    cc = ksub.add_parser("client-config", help="a Java client properties file for Kafka's tools (--command-config)")
    cc.add_argument("principal", nargs="?", help="connect as this principal (default: admin)")
    cc.set_defaults(handler=_kafka_client_config)
    pk = ksub.add_parser("pki", help="make a CA, broker keystores and a password per principal in DIR")
    pk.add_argument("directory", metavar="DIR")
    pk.add_argument("--host", action="append", help="a broker host name (repeatable; default 127.0.0.1)")
    pk.set_defaults(handler=_kafka_pki)
    ksub.add_parser("provision", help="create every principal's SCRAM user and apply the ACLs (as admin)"
                    ).set_defaults(handler=_kafka_provision)
    rt = ksub.add_parser("rotate", help="give one principal a new random password (as admin)")
    rt.add_argument("principal")
    rt.set_defaults(handler=_kafka_rotate)
    tool = ksub.add_parser("tool", help="run one of Kafka's own tools from the pinned release (arguments passed on)")
    tool.add_argument("tool", choices=sorted(KAFKA_TOOLS), help="the tool, as its script is called")
    tool.add_argument("tool_args", nargs=argparse.REMAINDER, metavar="ARGS",
                      help="its arguments, e.g. --bootstrap-server B --command-config FILE ...")
    tool.set_defaults(handler=_kafka_tool)
    lg = ksub.add_parser("logs", help="the last lines of the broker's own log")
    lg.add_argument("-n", "--lines", type=int, default=50)
    lg.set_defaults(handler=_kafka_logs)

    _add_schemas_parser(sub)
    wk = sub.add_parser("worker", help="run the routing worker (joins the consumer group; stop with Ctrl-C)")
    wk.add_argument("-l", "--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    wk.add_argument("-p", "--processes", type=int, default=None,
                    help="worker processes on this machine (default HUB_WORKER__PROCESSES, else one per core)")
    wk.set_defaults(handler=_worker)

    tp = sub.add_parser("topics", help="the hub's topics")
    tsub = tp.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    tshow = tsub.add_parser("show", help="each topic's data class, retention and why (and the broker's setting)")
    tshow.add_argument("--json", action="store_true")
    tshow.add_argument("--offline", action="store_true", help="only the configured policy; no broker needed")
    tshow.set_defaults(handler=_topics_show)
    tsub.add_parser("apply", help="correct the retention of existing topics to the configured policy (as admin)"
                    ).set_defaults(handler=_topics_apply)
    tsub.add_parser("create", help="create every hub topic that does not exist yet and apply the ACLs (as admin)"
                    ).set_defaults(
        handler=_topics_create
    )

    acl = sub.add_parser("acl", help="the broker's access rights, generated from the identity catalogue")
    aclsub = acl.add_subparsers(dest="acl_command", required=True, metavar="ACTION")
    aa = aclsub.add_parser("apply", help="make the cluster's ACLs exactly the generated ones (idempotent)")
    aa.add_argument("--json", action="store_true")
    aa.set_defaults(handler=_acl_apply)
    ash = aclsub.add_parser("show", help="the ACLs on the cluster (or --desired: the generated ones)")
    ash.add_argument("--principal", help="only this principal's")
    ash.add_argument("--desired", action="store_true", help="what `hub acl apply` would set (no broker needed)")
    ash.add_argument("--json", action="store_true")
    ash.set_defaults(handler=_acl_show)

    au = sub.add_parser("audit", help="the audit trail")
    asub = au.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    av = asub.add_parser("verify", help="check hub.audit's hash chains, MACs, signed checkpoints and anchors; exit 1 "
                                        "naming the first break")
    av.add_argument("--json", action="store_true")
    av.add_argument("--anchors", type=Path, default=None,
                    help="the anchor folder (default HUB_AUDIT__ANCHOR_DIR, <state dir>/audit-anchors/<topic>)")
    av.set_defaults(handler=_audit_verify)
    asj = asub.add_parser("subject", help="register extract (GDPR art. 15) of one person: every decision and "
                                          "recorded read; the personnummer is read from stdin or a prompt")
    asj.add_argument("--json", action="store_true")
    asj.add_argument("--html", type=Path, default=None, metavar="FILE",
                     help="also write a Swedish HTML report a registrar can hand out (print it to PDF)")
    asj.set_defaults(handler=_audit_subject)
    ak = asub.add_parser("keygen", help="new random audit MAC and signing keys (env lines; never logged)")
    ak.add_argument("--out", type=Path, default=None, help="write them to this new file (mode 0600) instead of stdout")
    ak.set_defaults(handler=_audit_keygen)

    ing = sub.add_parser("ingest", help="the authenticated HTTP ingest gateway agencies post events to")
    ing.add_argument("--host", default=None, help="listen address (default HUB_INGEST__HOST, 127.0.0.1)")
    ing.add_argument("--port", type=int, default=None, help="TCP port (default HUB_INGEST__PORT, 8088)")
    ing.add_argument("--new-token", metavar="UNIT",
                     help="print a new token of one source unit (polisen, kriminalvarden, kommun-1381, ...) and its "
                          "HUB_INGEST__TOKENS entry, then exit")
    ing.add_argument("--expires", metavar="ISO8601", help="expiry for --new-token (default: 90 days from now)")
    ing.set_defaults(handler=_ingest)

    wb = sub.add_parser("web", help="the coordinators' and operators' web app (inbox, lägesbild, operations)")
    wb.add_argument("--host", default=None, help="listen address (default HUB_WEB__HOST, 127.0.0.1)")
    wb.add_argument("--port", type=int, default=None, help="TCP port (default HUB_WEB__PORT, 8080)")
    wb.add_argument("--new-user", metavar="NAME",
                    help="print a generated password and the hashed HUB_WEB__USERS entry for NAME, then exit")
    wb.add_argument("--role", choices=["coordinator", "operator"], default="coordinator", help="for --new-user")
    wb.add_argument("--receiver", help="for --new-user: the coordinator's receiver (sig, socialtjanst, ...)")
    wb.add_argument("--municipality", metavar="CODE", help="for --new-user: e.g. 1381, or 13 for the county")
    wb.set_defaults(handler=_web)

    tl = sub.add_parser("tail", help="print what a receiver sees, as it arrives")
    tl.add_argument("receiver", help="sig, socialtjanst, ungdom, vbe, hrv, medborgarloften, grannsamverkan, lagesbild")
    tl.add_argument("--municipality", "-m", metavar="CODE", help="one municipality (e.g. 1381) or 13 for the county")
    tl.add_argument("--from-beginning", action="store_true", help="start at the oldest delivery, not at new ones")
    tl.add_argument("--json", action="store_true", help="one JSON object per line")
    tl.add_argument("--max", type=int, metavar="N", help="exit after N messages")
    tl.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds without a message")
    tl.add_argument("--reveal", action="store_true",
                    help="show the personnummer unmasked: only as a sig or socialtjanst inbox's own principal")
    tl.set_defaults(handler=_tail)

    sm = sub.add_parser("simulate", help="publish realistic simulated traffic for all agencies")
    sm.add_argument("--rate", type=float, default=50.0, metavar="N", help="events per second")
    sm.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    sm.add_argument("--seed", type=int, default=2026, help="deterministic under the same seed")
    sm.add_argument("--clock", choices=("replay", "wall"), default="replay",
                    help="replay: Halland's volume, recent weeks replayed at the rate (default); wall: every "
                         "kind scaled to the rate, simulated time runs with the wall clock (soaks)")
    sm.set_defaults(handler=_simulate)

    cn = sub.add_parser("connector", help="run an agency connector")
    csub = cn.add_subparsers(dest="connector", required=True, metavar="NAME")
    pf = csub.add_parser("polisen-feed", help="poll the police's public events API and publish new notices")
    pf.add_argument("--base-url", default="https://polisen.se", help="API base URL (default https://polisen.se)")
    pf.add_argument("--interval", type=float, default=60.0, metavar="S", help="seconds between polls (min 10)")
    pf.add_argument("--polls", type=int, metavar="N", help="stop after N polls (default: run until Ctrl-C)")
    pf.add_argument("--status-port", type=int, metavar="P",
                    help=STATUS_PORT_HELP)
    pf.set_defaults(handler=_polisen_feed)
    fd = csub.add_parser("filedrop", help="publish the rows of CSV/JSON files dropped into a folder (docs/filedrop.md)")
    fd.add_argument("--agency", required=True, metavar="UNIT",
                    help="whose folder it is: kriminalvarden or one municipality, kommun-<code> (e.g. kommun-1381)")
    fd.add_argument("directory", metavar="DIR",
                    help="the drop folder; processed files go to DIR/done/, refused ones to DIR/rejected/")
    fd.add_argument("--once", action="store_true", help="process the files there now, then exit")
    fd.add_argument("--interval", type=float, default=2.0, metavar="S",
                    help="seconds between polls of the folder (default 2)")
    fd.add_argument("--status-port", type=int, metavar="P",
                    help=STATUS_PORT_HELP)
    fd.set_defaults(handler=_filedrop)

    lb = sub.add_parser("lagesbild", help="the situational picture of a municipality or the county (13)")
    lb.add_argument("municipality", nargs="?", help="SCB code, e.g. 1381, or 13 for the county")
    lb.add_argument("--since", metavar="PERIOD", help="first period, e.g. 2026-W10")
    lb.add_argument("--until", metavar="PERIOD", help="last period")
    lb.add_argument("--category", action="append", help="only these categories (repeatable)")
    lb.add_argument("--period-kind", choices=["week", "day"], default="week")
    fmt = lb.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--indicators", action="store_true",
                     help="neighbourhood-watch effect and citizen-promise follow-up (JSON)")
    fmt.add_argument("--png", type=Path, metavar="FILE", help="write a chart of the weekly counts (PNG)")
    fmt.add_argument("--rebuild", action="store_true",
                     help="recompute every aggregate from the agency topics (workers stopped); prints a summary")
    lb.set_defaults(handler=_lagesbild)

    dm = sub.add_parser("demo", help="run everything locally with real and simulated events (Ctrl-C stops)")
    dm.add_argument("--duration", type=float, metavar="S", help="stop by itself after S seconds")
    dm.add_argument("--rate", type=float, default=50.0, metavar="N", help="simulated events per second (default 50)")
    dm.add_argument("--seed", type=int, default=2026, help="simulator seed (deterministic traffic)")
    dm.set_defaults(handler=_demo)

    rc = sub.add_parser("reconcile", help="account for every event: delivered, refused, counted or dead-lettered")
    rc.add_argument("--json", action="store_true")
    rc.add_argument("--repair", action="store_true",
                    help="publish unaccounted source messages again (same bytes, same event ids)")
    rc.set_defaults(handler=_reconcile)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from hub import logsafety

    logsafety.install()
    handler: Handler = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
