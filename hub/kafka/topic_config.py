"""Reading and correcting the configuration of existing topics (``hub topics show`` / ``hub topics apply``).

Retention is set when ``hub topics create`` creates a topic; a topic created before (or changed by hand)
is corrected here with IncrementalAlterConfigs — only the keys the hub owns (``cleanup.policy``,
``retention.ms``), nothing else. librdkafka's AdminClient, as for the ACLs.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.kafka.admin import TopicSpec
from hub.kafka.clients import KafkaAccess

OWNED = ("cleanup.policy", "retention.ms")


@dataclass(frozen=True)
class Correction:
    topic: str
    key: str
    was: str | None
    now: str


def _client(access: KafkaAccess) -> object:
    from confluent_kafka.admin import AdminClient

    return AdminClient({**access.librdkafka_config(), "log_level": 3})


def current_configs(access: KafkaAccess, names: list[str], timeout_s: float = 30.0,
                    keys: tuple[str, ...] = OWNED) -> dict[str, dict[str, str]]:  # fmt: skip
    """``keys`` (default: the owned ones) of each existing topic (a topic that does not exist is left out)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource, ResourceType

    client = _client(access)
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
    out: dict[str, dict[str, str]] = {}
    for res, fut in client.describe_configs(resources, request_timeout=timeout_s).items():  # type: ignore[attr-defined]
        try:
            entries = fut.result(timeout=timeout_s)
        except KafkaException:
            continue  # no such topic
        out[res.name] = {k: v.value for k, v in entries.items() if k in keys and v.value is not None}
    return out


def corrections(specs: list[TopicSpec], current: dict[str, dict[str, str]]) -> list[Correction]:
    """What differs between the specs and the topics as they are (only existing topics, only owned keys)."""
    out = []
    for spec in specs:
        have = current.get(spec.name)
        if have is None:
            continue
        for key in OWNED:
            want = spec.config.get(key)
            if want is not None and have.get(key) != want:
                out.append(Correction(spec.name, key, have.get(key), want))
    return out


def apply_corrections(access: KafkaAccess, fixes: list[Correction], timeout_s: float = 30.0) -> None:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    by_topic: dict[str, list[Correction]] = {}
    for fix in fixes:
        by_topic.setdefault(fix.topic, []).append(fix)
    resources = [ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(f.key, f.now, incremental_operation=AlterConfigOpType.SET) for f in items])
        for topic, items in by_topic.items()]  # fmt: skip
    if not resources:
        return
    client = _client(access)
    for fut in client.incremental_alter_configs(resources, request_timeout=timeout_s).values():  # type: ignore[attr-defined]
        fut.result(timeout=timeout_s)
