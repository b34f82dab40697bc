"""The audit trail's seal: keys from ``hub audit keygen``, the checkpoint cadence, and a worker that seals its
trail when traffic stops (the tampering it catches: test_audit_tamper.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from hub.audit import AuditChain, verify
from hub.audit_anchor import FileAnchors
from hub.audit_seal import sealer_from
from hub.contract.outputs import AuditCheckpoint, AuditRecord, Decision
from hub.deadline import Deadline
from hub.settings import HubSettings
from tests import factories as f
from tests.hub.support import REPO, SERDE, running_hub

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def keygen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", "audit", "keygen", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, "HUB_ENV": "dev"})  # fmt: skip


def test_keygen_writes_new_keys_to_a_private_file_and_never_overwrites_one(tmp_path: Path) -> None:
    out = tmp_path / "audit-keys.env"
    done = keygen("--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert set(lines) == {"HUB_AUDIT__MAC_KEY", "HUB_AUDIT__SIGNING_KEY", "HUB_AUDIT__VERIFY_KEY"}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert lines["HUB_AUDIT__MAC_KEY"] not in done.stdout + done.stderr  # the secrets go to the file only
    assert lines["HUB_AUDIT__SIGNING_KEY"] not in done.stdout + done.stderr
    # The keys work as settings: the public key is the signing key's, and the MAC key is not the derived one.
    given = HubSettings(audit={"mac_key": SecretStr(lines["HUB_AUDIT__MAC_KEY"]),  # type: ignore[arg-type]
                               "signing_key": SecretStr(lines["HUB_AUDIT__SIGNING_KEY"]),
                               "verify_key": lines["HUB_AUDIT__VERIFY_KEY"]})  # fmt: skip
    sealer, derived = sealer_from(given), sealer_from(HubSettings())
    assert sealer.record_mac("ab" * 32) != derived.record_mac("ab" * 32)
    assert sealer.key_id != derived.key_id
    again = keygen("--out", str(out))
    assert again.returncode == 1
    assert "not overwritten" in again.stderr
    assert dict(line.split("=", 1) for line in out.read_text().splitlines()) == lines


def test_a_verify_key_that_is_not_the_signing_keys_is_refused() -> None:
    other = dict(line.split("=", 1) for line in keygen().stdout.splitlines())
    with pytest.raises(ValueError, match="not the public key"):
        sealer_from(HubSettings(audit={"verify_key": other["HUB_AUDIT__VERIFY_KEY"]}))  # type: ignore[arg-type]


def _append(chain: AuditChain, partition: int, n: int) -> list[AuditRecord | AuditCheckpoint]:
    out: list[AuditRecord | AuditCheckpoint] = []
    for i in range(n):
        datum = chain.append_datum(partition, event_id=f"e{i}", receiver="sig", legal_basis="LUL 6 §",
                                   decision=Decision.delivered, reason=None, fields_disclosed=[], at=AT)  # fmt: skip
        out.append(AuditRecord.model_validate(datum))
        if chain.due(partition):
            out.append(AuditCheckpoint.model_validate(chain.checkpoint(partition, AT)))
    return out


def test_a_checkpoint_after_every_n_records_and_after_a_taken_over_chain() -> None:
    sealer = sealer_from(HubSettings())
    chain = AuditChain(sealer, every=3, seconds=3600)
    chain.set_head(0, None)
    trail = _append(chain, 0, 7)
    assert [type(r).__name__[5] for r in trail] == list("RRRCRRRCR")  # R(ecord), C(heckpoint)
    cp = trail[3]
    assert isinstance(cp, AuditCheckpoint)
    assert (cp.seq, cp.head, sealer.signature_ok(cp)) == (2, trail[2].hash, True)  # type: ignore[union-attr]
    assert [e["seq"] for e in chain.made] == [2, 5]
    # Taken over from its last record (not a checkpoint), the chain is sealed with the next record.
    last = trail[-1]
    assert isinstance(last, AuditRecord)
    successor = AuditChain(sealer, every=3, seconds=3600)
    successor.set_head(0, last)
    more = _append(successor, 0, 1)
    assert [type(r).__name__ for r in more] == ["AuditRecord", "AuditCheckpoint"]
    records = [(0, i, r) for i, r in enumerate([*trail, *more])]
    assert verify(records, sealer, every=3).ok
    # No records since the last checkpoint: nothing is stale; a record, and then time, makes it so.
    assert successor.stale(int((AT + timedelta(hours=2)).timestamp() * 1000)) == []
    _append(successor, 0, 1)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    assert successor.stale(now_ms) == []
    assert successor.stale(now_ms + 3600_000) == [0]


@pytest.mark.kafka
def test_the_worker_seals_and_anchors_its_trail_when_traffic_stops(kafka_bootstrap: str, tmp_path: Path) -> None:
    """One event, then nothing: within HUB_AUDIT__CHECKPOINT_SECONDS of its records the worker writes a
    checkpoint of the partition (at a batch's end, or idle), and anchors it; the trail verifies, every MAC too."""
    with running_hub(kafka_bootstrap, tmp_path, "seal", {"HUB_AUDIT__CHECKPOINT_SECONDS": "1"}) as hub:
        hub.publish([f.minor_suspected(municipality="1383")])
        t = hub.topics
        got = hub.read([t.audit], until=lambda g: any(isinstance(r, AuditCheckpoint) for r in g[t.audit]),
                       quiet_s=1)  # fmt: skip
        records = [r for r in got[t.audit] if isinstance(r, AuditRecord)]
        checkpoints = [r for r in got[t.audit] if isinstance(r, AuditCheckpoint)]
        assert records
        assert {c.partition for c in checkpoints} == {r.partition for r in records}
        store = FileAnchors(hub.settings().audit_anchor_dir)

        def anchored() -> bool:
            return {(e["partition"], e["seq"]) for p in store.partitions() for e in store.read(p)} >= {
                (c.partition, c.seq) for c in checkpoints}

        Deadline(30, "the idle worker's checkpoints to be anchored").wait_for(anchored)
        code, report = hub.audit_verify_cli()
        assert (code, report["ok"], report["macs_checked"]) == (0, True, len(records)), report
        assert report["anchored"] >= len(checkpoints)
    assert all(SERDE.decode(SERDE.encode(c)) == c for c in checkpoints)
