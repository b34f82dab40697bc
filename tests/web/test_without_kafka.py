"""The web app in-process with no Kafka behind it: it still starts, logs people in, says it is not ready,
and answers a page that needs Kafka with a Swedish 503 instead of a stack trace."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer

from hub.kafka.local import free_port
from hub.settings import HubSettings, WebSettings, WebUser
from hub.web import create_app, hash_password


def settings(cookie_secure: bool) -> HubSettings:
    users = {"laholm-sig": WebUser(password_hash=hash_password("lösen", n=2**10), receiver="sig", municipality="1381")}
    return HubSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}",  # nothing listens there
                       web=WebSettings(users=users, cookie_secure=cookie_secure, session_secret="s" * 32))  # type: ignore[arg-type]


async def _exercise(cookie_secure: bool) -> dict[str, Any]:
    app = create_app(settings(cookie_secure))
    async with TestClient(TestServer(app)) as client:
        session: ClientSession = client.session
        out: dict[str, Any] = {}
        out["health"] = (await client.get("/health")).status
        out["ready"] = (await client.get("/ready")).status
        login = await client.post("/login", data={"username": "laholm-sig", "password": "lösen"}, allow_redirects=False)
        out["login"] = login.status
        out["set_cookie"] = login.headers["Set-Cookie"]
        cookie = login.cookies["hub_session"].value
        page = await session.get(client.make_url("/inbox/sig/1381"), headers={"Cookie": f"hub_session={cookie}"})
        out["page"] = (page.status, page.headers.get("Retry-After"), await page.text())
        gc.collect()
        out["open_consumers"] = [o for o in gc.get_objects() if isinstance(o, AIOKafkaConsumer) and not o._closed]
        return out


def test_without_kafka_pages_answer_503_in_swedish_and_ready_says_no() -> None:
    out = asyncio.run(_exercise(cookie_secure=True))
    assert out["health"] == 200
    assert out["ready"] == 503
    assert out["login"] == 303
    status, retry_after, body = out["page"]
    assert status == 503
    assert retry_after == "5"
    assert "Tillfälligt otillgänglig" in body
    assert "Traceback" not in body
    assert out["open_consumers"] == []  # a page that failed to reach Kafka left no consumer behind


def test_the_secure_flag_follows_the_setting() -> None:
    assert "Secure" in asyncio.run(_exercise(cookie_secure=True))["set_cookie"]
    assert "Secure" not in asyncio.run(_exercise(cookie_secure=False))["set_cookie"]
