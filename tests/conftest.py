"""Session-wide fixtures: one real, secured Apache Kafka broker for the whole run, and unique names per test.

The broker is the project's own local broker (``hub.kafka.local.LocalBroker``: TLS on every listener,
SASL/SCRAM-SHA-512, deny-by-default ACLs) on free ports in a temporary folder, unless ``HUB_KAFKA_BOOTSTRAP``
points at an existing cluster (then ``HUB_KAFKA__CA_FILE`` and ``HUB_KAFKA__CREDENTIALS_DIR`` say how to
reach it). Its CA and credentials folder are put in the environment for the whole session, with
``HUB_ENV=dev``, so every client the tests make connects as the hub's do (:mod:`tests.kafka_env`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.kafka.clients import KafkaAccess
from hub.kafka.local import BrokerError, LocalBroker, free_port
from hub.settings import get_settings
from tests.kafka_env import access

# Development mode for the whole session: placeholder secrets are allowed (tests of the production check
# set HUB_ENV themselves).
os.environ.setdefault("HUB_ENV", "dev")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", help="run fault/fuzz suites at their full sizes")


@pytest.fixture(scope="session")
def full_run(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--full"))


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The broker this session started (None when ``HUB_KAFKA_BOOTSTRAP`` names an existing cluster)."""
    if os.environ.get("HUB_KAFKA_BOOTSTRAP"):
        yield None
        return
    home_env = os.environ.get("HUB_TEST_KAFKA_HOME")
    home = Path(home_env) if home_env else tmp_path_factory.mktemp("kafka")
    broker = LocalBroker(home, port=free_port(), controller_port=free_port(), internal_port=free_port(),
                         start_timeout_s=120)
    try:
        broker.up()
    except BrokerError as exc:
        pytest.fail(f"could not start the test broker: {exc}", pytrace=False)
    os.environ["HUB_KAFKA__CA_FILE"] = str(broker.pki.ca_file)
    os.environ["HUB_KAFKA__CREDENTIALS_DIR"] = str(broker.pki.users_dir)
    get_settings.cache_clear()
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(session_broker: LocalBroker | None) -> str:
    """Bootstrap address of the running, secured Kafka broker of this test session."""
    return session_broker.bootstrap if session_broker is not None else os.environ["HUB_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> KafkaAccess:
    """The session broker as its super user ``admin``."""
    return access(kafka_bootstrap)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Factory for names no other test uses: ``unique("topic")`` → ``topic-3f9a1c2e``."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real reference data beside the repository (``../shared/data``); skip when absent."""
    if not (SHARED_DATA / "polisen-events-sample.json").exists():
        pytest.skip(f"real data folder {SHARED_DATA} is absent; tests that read it are skipped")
    return SHARED_DATA
