"""One hub (a real `hub worker`) and one `hub web` subprocess shared by the web tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hub.support import HubUnderTest, running_hub
from tests.web.support import Login, WebUnderTest, make_users

USERS = {
    "laholm-sig": {"receiver": "sig", "municipality": "1381", "display_name": "SIG-samordnare Laholm"},
    "halmstad-soc": {"receiver": "socialtjanst", "municipality": "1380"},
    "laholm-lagesbild": {"receiver": "lagesbild", "municipality": "1381"},
    "lan-lagesbild": {"receiver": "lagesbild", "municipality": "13"},
    "drift": {"role": "operator"},
    "kungsbacka-hrv": {"receiver": "hrv", "municipality": "1384"},
}
LOCKED_OUT = "kungsbacka-hrv"
"""The login-throttle test locks this user name out; no other test logs in with it."""


@pytest.fixture(scope="package")
def hub(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubUnderTest]:
    with running_hub(kafka_bootstrap, tmp_path_factory.mktemp("web"), "web") as h:
        yield h


@pytest.fixture(scope="package")
def users() -> dict[str, Login]:
    return make_users(USERS)


@pytest.fixture(scope="package")
def web(hub: HubUnderTest, users: dict[str, Login]) -> Iterator[WebUnderTest]:
    # Secure cookies as in production: browsers accept them from http://127.0.0.1 (a secure context).
    app = WebUnderTest(hub, users)
    app.start()
    try:
        yield app
    finally:
        app.stop()
