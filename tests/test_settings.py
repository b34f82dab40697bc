"""Settings come from HUB_* environment variables, nested with __, and never print a secret."""

from __future__ import annotations

import json

import pytest

from hub.settings import HubSettings


def test_environment_overrides_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_KAFKA_BOOTSTRAP", "kafka-1:9092")
    monkeypatch.setenv("HUB_LOCAL_KAFKA__PORT", "29092")
    monkeypatch.setenv("HUB_MUNICIPALITY_CODES", '["1381"]')
    s = HubSettings()
    assert s.kafka_bootstrap == "kafka-1:9092"
    assert s.local_kafka.port == 29092
    assert s.municipality_codes == ["1381"]


def test_defaults_are_halland_and_a_local_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HUB_KAFKA_BOOTSTRAP", "HUB_LOCAL_KAFKA__PORT", "HUB_MUNICIPALITY_CODES"):
        monkeypatch.delenv(var, raising=False)
    s = HubSettings()
    assert s.kafka_bootstrap is None
    assert s.local_kafka.host == "127.0.0.1"
    assert sorted(s.municipality_codes) == ["1315", "1380", "1381", "1382", "1383", "1384"]


def test_secrets_are_masked_when_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PSEUDONYM_KEYS", '{"vbe": "very-secret-key-1", "hrv": "very-secret-key-2"}')
    s = HubSettings()
    assert s.pseudonym_keys["vbe"].get_secret_value() == "very-secret-key-1"
    dumped = json.dumps(s.masked())
    assert "very-secret-key" not in dumped
    assert "**********" in dumped
    assert "very-secret-key" not in repr(s)
