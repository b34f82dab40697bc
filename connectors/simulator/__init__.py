"""Deterministic agency traffic simulator (pure; no Kafka). See README.md in this folder."""
