"""Evolution check (Apache Avro's checker, BACKWARD-transitive), the CLI, and the generated docs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub.contract.compat import check_backward_transitive, check_schemas_dir
from hub.contract.registry import SchemaRegistry
from hub.kafka.clients import KafkaAccess
from hub.settings import REPO_ROOT

SCHEMAS = REPO_ROOT / "schemas"


def test_repository_schemas_are_backward_transitive() -> None:
    assert check_schemas_dir(SCHEMAS) == []


def _copy_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, target)
    return target


def test_incompatible_new_version_is_reported(tmp_path: Path) -> None:
    schemas = _copy_schemas(tmp_path)
    v2 = json.loads((schemas / "kommun/youth_activity/v2.avsc").read_text())
    payload = v2["fields"][1]["type"]
    payload["fields"].append({"name": "budget_sek", "type": "long", "doc": "required, no default"})
    (schemas / "kommun/youth_activity/v3.avsc").write_text(json.dumps(v2))
    problems = check_backward_transitive(SchemaRegistry(schemas))
    assert {(p.reader_version, p.writer_version) for p in problems} == {(3, 1), (3, 2)}
    text = problems[0].describe()
    assert "se.samverkan.kommun.YouthActivity: v3 cannot read data written with v1" in text
    assert "budget_sek" in text


def test_removed_enum_symbol_is_reported(tmp_path: Path) -> None:
    schemas = _copy_schemas(tmp_path)
    v1 = json.loads((schemas / "polisen/extremism_concern/v1.avsc").read_text())
    v1["fields"][1]["type"]["fields"][3]["type"]["symbols"] = ["low", "high"]
    (schemas / "polisen/extremism_concern/v2.avsc").write_text(json.dumps(v1))
    problems = check_schemas_dir(schemas)
    assert len(problems) == 1
    assert "medium" in problems[0].describe()


def _hub(*args: str, env_schemas: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    if env_schemas is not None:
        env["HUB_SCHEMAS_DIR"] = str(env_schemas)
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        check=False,
        timeout=120,
    )


def test_cli_schemas_check_passes_and_fails(tmp_path: Path) -> None:
    ok = _hub("schemas", "check")
    assert ok.returncode == 0, ok.stderr
    schemas = _copy_schemas(tmp_path)
    v2 = json.loads((schemas / "kommun/youth_activity/v2.avsc").read_text())
    v2["fields"][1]["type"]["fields"][2]["type"] = "boolean"  # activity_kind: string → boolean
    (schemas / "kommun/youth_activity/v3.avsc").write_text(json.dumps(v2))
    bad = _hub("schemas", "check", "--json", env_schemas=schemas)
    assert bad.returncode == 1
    problems = json.loads(bad.stdout)
    assert problems
    assert all(p["record"] == "se.samverkan.kommun.YouthActivity" for p in problems)


def test_docs_are_up_to_date() -> None:
    result = _hub("schemas", "docs", "--check")
    assert result.returncode == 0, f"docs/events.md is stale: run `hub schemas docs` ({result.stderr})"


def test_docs_check_detects_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "events.md"
    stale.write_text("# old\n")
    assert _hub("schemas", "docs", "--check", "--output", str(stale)).returncode == 1
    assert _hub("schemas", "docs", "--output", str(stale)).returncode == 0
    assert _hub("schemas", "docs", "--check", "--output", str(stale)).returncode == 0
    text = stale.read_text()
    for event_type in ("polisen.minor_suspected", "kommun.youth_activity", "hub.deadletter"):
        assert f"### `{event_type}`" in text
    assert "adds `participants_girls`" in text


@pytest.mark.kafka
def test_schema_topic_round_trip(kafka_admin: KafkaAccess, unique: object) -> None:
    """Publish every schema to a fresh compacted topic and load it into an empty-ish registry."""
    import asyncio

    from aiokafka.admin import NewTopic

    from hub.contract.schema_topic import TOPIC_CONFIG, load_from_topic, publish_schemas
    from hub.kafka import clients

    topic = unique("hub.schemas")  # type: ignore[operator]
    registry = SchemaRegistry(SCHEMAS)

    async def run() -> int:
        admin = clients.admin(kafka_admin)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=TOPIC_CONFIG)])
        finally:
            await admin.close()
        producer = clients.producer(kafka_admin)
        await producer.start()
        try:
            sent = await publish_schemas(producer, registry, topic)
        finally:
            await producer.stop()
        assert sent == len(registry.all_versions())
        return await load_from_topic(kafka_admin, registry, topic)

    assert asyncio.run(run()) == len(registry.all_versions())
