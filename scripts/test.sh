#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, types, then pytest against a real local Apache Kafka broker.
# Extra arguments go to pytest (e.g. `scripts/test.sh --full`, `scripts/test.sh -k routing`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

echo "== ruff" >&2
.venv/bin/ruff check hub connectors tests bench
echo "== mypy --strict (hub, connectors)" >&2
.venv/bin/mypy

# The broker the test session starts lives here; whatever happens, nothing of it is left running.
export HUB_TEST_KAFKA_HOME="$PWD/.hub/test-kafka-$$"
cleanup() {
  pkill -f "kafka.Kafka .*${HUB_TEST_KAFKA_HOME}" 2>/dev/null || true
  rm -rf "$HUB_TEST_KAFKA_HOME"
}
trap cleanup EXIT

mkdir -p test-artifacts
echo "== pytest" >&2
set +e
.venv/bin/python -m pytest -p no:cacheprovider --junitxml=test-artifacts/junit.xml "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
