#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, types, then pytest against a real local Apache Kafka broker.
# Extra arguments go to pytest (e.g. `scripts/test.sh --full`, `scripts/test.sh -k routing`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

# Browser tests run Debian's Chromium and its matching ChromeDriver; a fresh machine has neither.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "== installing Debian chromium + chromium-driver for the browser tests" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >&2
fi
# The monitoring test runs Debian's Prometheus (and promtool) against the live processes.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "== installing Debian prometheus for the monitoring test" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >&2
fi

echo "== ruff" >&2
.venv/bin/ruff check hub connectors tests bench
echo "== mypy --strict (hub, connectors)" >&2
.venv/bin/mypy

# The broker the test session starts lives here; whatever happens, nothing of it is left running.
export HUB_TEST_KAFKA_HOME="$PWD/.hub/test-kafka-$$"
cleanup() {
  pkill -f "kafka.Kafka .*${HUB_TEST_KAFKA_HOME}" 2>/dev/null || true
  pkill -f "kafka.Kafka .*$PWD/test-artifacts/" 2>/dev/null || true  # a test's own cluster (tests/cluster)
  rm -rf "$HUB_TEST_KAFKA_HOME"
}
trap cleanup EXIT

# Everything the run writes lands in test-artifacts/ (a fresh one per run): pytest's own output, the JUnit
# report, and every tmp_path — so the logs of the hub processes the tests start are there too.
rm -rf test-artifacts
mkdir -p test-artifacts
echo "== pytest" >&2
set +e
.venv/bin/python -m pytest -p no:cacheprovider --basetemp=test-artifacts/tmp --junitxml=test-artifacts/junit.xml \
  "$@" 2>&1 | tee test-artifacts/pytest-output.log
rc=${PIPESTATUS[0]}
# No personnummer in any log or captured output of the run (also when pytest failed), nor in the broker's logs.
echo "== scanning logs and captured output for personnummer" >&2
.venv/bin/python scripts/scan_logs.py test-artifacts "$HUB_TEST_KAFKA_HOME/logs"
scan_rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests; that is a failure" >&2
  exit 1
fi
if [ "$scan_rc" -ne 0 ]; then
  echo "error: a log or captured output of the test run holds a personnummer (listed above, redacted)" >&2
  [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
