"""File-drop connector: CSV/JSON exports to contract events (pure mapping; no Kafka). See docs/filedrop.md."""
