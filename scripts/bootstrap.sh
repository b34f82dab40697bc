#!/usr/bin/env bash
# Prepare this checkout on a fresh machine: a Python venv with the hub installed, and the pinned Apache
# Kafka broker resolved from Maven Central into the local Maven cache. Safe to run again (fast no-op).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required ($2)" >&2; exit 1; }; }
need java "Java 17+ runs the local Kafka broker"
need mvn "Maven resolves Apache Kafka from Maven Central"

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "error: Python 3.11+ is required" >&2; exit 1; }

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating .venv with $($PY --version) and installing the hub (dev extras) ..." >&2
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[dev]' >&2
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Resolve the broker's jars now (once), so the first `hub kafka up` or test session does not wait on it.
.venv/bin/python - <<'PY' >&2
from hub.kafka.local import broker_from_settings
from hub.settings import get_settings
broker = broker_from_settings(get_settings())
broker.classpath()
print(f"bootstrap: Apache Kafka {broker.version} resolved from Maven Central")
PY
