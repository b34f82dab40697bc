"""`hub web` over plain HTTP: logins and cookies, the scope wall for every page and stream, the live stream's
resume semantics, metrics, health and readiness. The app is the `hub web` subprocess of tests/web/conftest.py."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from hub.deadline import Deadline
from hub.rules.receivers import RECEIVERS
from hub.settings import HubSettings
from hub.web.auth import verify_password
from tests import factories as f
from tests.hub.support import REPO, HubUnderTest
from tests.web.conftest import LOCKED_OUT, USERS
from tests.web.support import Client, Login, WebUnderTest, metric

pytestmark = pytest.mark.kafka

POSITION = re.compile(r"^\d+:\d+(,\d+:\d+)*$")


def test_anonymous_visitors_are_sent_to_login_and_streams_get_401(web: WebUnderTest) -> None:
    c = Client(web.url)
    home = c.request("/")
    assert (home.status, home.headers["Location"]) == (303, "/login")
    page = c.request("/inbox/sig/1381")
    assert (page.status, page.headers["Location"]) == (303, "/login?next=/inbox/sig/1381")
    assert c.request("/inbox/sig/1381/events").status == 401
    assert c.request("/lagesbild/13/chart.svg").status == 401
    login = c.request("/login?next=/inbox/sig/1381")
    assert login.status == 200
    assert '<html lang="sv">' in login.body
    assert '<label for="password">Lösenord</label>' in login.body
    assert 'name="next" value="/inbox/sig/1381"' in login.body
    assert 'value="//evil.example"' not in c.request("/login?next=//evil.example").body  # no open redirect


def test_login_sets_a_hardened_session_cookie_and_wrong_passwords_are_counted(
    web: WebUnderTest, users: dict[str, Login]
) -> None:
    before = metric(Client(web.url).request("/metrics").body, "hub_web_login_failures_total",
                    reason="wrong_credentials")  # fmt: skip
    c = Client(web.url)
    wrong = c.request("/login", {"username": "laholm-sig", "password": "fel"})
    assert wrong.status == 401
    assert "Fel användarnamn eller lösenord." in wrong.body
    unknown = c.request("/login", {"username": "ingen-sadan", "password": "fel"})
    assert unknown.status == 401
    assert c.session is None
    after = metric(c.request("/metrics").body, "hub_web_login_failures_total", reason="wrong_credentials")
    assert after == before + 2

    ok = c.login(users["laholm-sig"])
    assert ok.headers["Location"] == "/inbox/sig/1381"
    cookie = ok.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"):
        assert attribute in cookie
    assert users["laholm-sig"].password not in cookie
    assert c.request("/inbox/sig/1381").status == 200
    assert c.request("/").headers["Location"] == "/inbox/sig/1381"


def test_tampered_cookies_and_logged_out_sessions_are_refused(web: WebUnderTest, users: dict[str, Login]) -> None:
    c = Client(web.url)
    c.login(users["halmstad-soc"])
    stolen = c.session
    assert stolen
    forged = Client(web.url)
    body, signature = stolen.rsplit(".", 1)
    forged.session = body.replace(body[5], "A" if body[5] != "A" else "B") + "." + signature
    assert forged.request("/inbox/socialtjanst/1380").status == 303  # to the login page
    logout = c.request("/logout", {})
    assert (logout.status, logout.headers["Location"]) == (303, "/login")
    replay = Client(web.url)
    replay.session = stolen  # the cookie value from before the logout
    assert replay.request("/inbox/socialtjanst/1380").status == 303


def test_repeated_failures_lock_the_user_name_for_a_while(web: WebUnderTest, users: dict[str, Login]) -> None:
    c = Client(web.url)
    for _ in range(5):
        assert c.request("/login", {"username": LOCKED_OUT, "password": "gissning"}).status == 401
    locked = c.request("/login", {"username": LOCKED_OUT, "password": users[LOCKED_OUT].password})
    assert locked.status == 429
    assert c.session is None
    assert metric(c.request("/metrics").body, "hub_web_login_failures_total", reason="throttled") >= 1
    Client(web.url).login(users["laholm-sig"])  # other users are not affected


def test_cross_site_form_posts_are_refused(web: WebUnderTest, users: dict[str, Login]) -> None:
    login = users["laholm-sig"]
    c = Client(web.url)
    reply = c.request("/login", {"username": login.username, "password": login.password},
                      headers={"Origin": "https://evil.example"})  # fmt: skip
    assert reply.status == 403
    assert c.session is None


def _expected(user: dict[str, str], receiver: str, code: str) -> int:
    return 200 if user.get("receiver") == receiver and user.get("municipality") == code else 403


@contextmanager
def stream(web: WebUnderTest, session: str | None, path: str, last_event_id: str | None = None
           ) -> Iterator[http.client.HTTPResponse]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
    headers = {"Accept": "text/event-stream"}
    if session:
        headers["Cookie"] = f"hub_session={session}"
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    conn.request("GET", path, headers=headers)
    try:
        yield conn.getresponse()
    finally:
        conn.close()


def test_every_user_sees_exactly_their_scope_over_http_and_sse(web: WebUnderTest, users: dict[str, Login]) -> None:
    codes = ["1381", "1380", "13"]
    scoped = {name: spec for name, spec in USERS.items() if name != LOCKED_OUT}
    for name, spec in scoped.items():
        c = Client(web.url)
        c.login(users[name])
        for receiver in RECEIVERS:
            for code in codes:
                expected = _expected(spec, receiver, code)
                assert c.request(f"/inbox/{receiver}/{code}").status == expected, (name, receiver, code)
                with stream(web, c.session, f"/inbox/{receiver}/{code}/events") as r:
                    assert r.status == expected, (name, receiver, code, "stream")
                    if expected == 200:
                        assert r.headers["Content-Type"].startswith("text/event-stream")
        for code in codes:
            expected = _expected(spec, "lagesbild", code)
            assert c.request(f"/lagesbild/{code}").status == expected, (name, code)
            assert c.request(f"/lagesbild/{code}/chart.svg").status == expected, (name, code, "chart")
        assert c.request("/operator").status == (200 if spec.get("role") == "operator" else 403), name
        assert c.request("/inbox/sig/9999").status == 403  # not even whether a code exists is revealed
    forbidden = metric(Client(web.url).request("/metrics").body, "hub_web_forbidden_total",
                       route="/inbox/{receiver}/{code}/events")  # fmt: skip
    assert forbidden >= len(scoped) * (len(RECEIVERS) * len(codes) - 1)


def _events(response: http.client.HTTPResponse, deadline: Deadline) -> Iterator[dict[str, str]]:
    """Server-sent events as {field: value} (data lines joined), skipping comments and retry-only blocks."""
    event: dict[str, str] = {}
    while True:
        deadline.check()
        line = response.readline().decode()
        if line == "":
            return
        line = line.rstrip("\n")
        if line == "":
            if "event" in event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            event[name] = f"{event[name]}\n{value}" if name == "data" and name in event else value


def test_the_live_stream_pushes_new_deliveries_and_resumes_after_the_last_event_id(
    hub: HubUnderTest, web: WebUnderTest, users: dict[str, Login]
) -> None:
    c = Client(web.url)
    c.login(users["halmstad-soc"])
    page = c.request("/inbox/socialtjanst/1380")
    path = re.search(r'data-stream="([^"]+)"', page.body)
    assert path is not None
    first, second = f.minor_suspected(municipality="1380"), f.minor_suspected(municipality="1380")
    with stream(web, c.session, path.group(1).replace("&amp;", "&")) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        hub.publish([first])
        got = next(e for e in _events(r, Deadline(90, "the first delivery on the stream"))
                   if e["event"] == "item" and str(first.envelope.event_id) in e["data"])  # fmt: skip
    assert POSITION.match(got["id"])
    assert "statute:LUL-6§" in got["data"]
    assert f"{f.MINOR[:8]}-****" in got["data"]
    assert f.MINOR not in got["data"]

    hub.publish([second])  # while no stream is open
    with stream(web, c.session, "/inbox/socialtjanst/1380/events", last_event_id=got["id"]) as r:
        resumed = next(e for e in _events(r, Deadline(90, "the stream to resume")) if e["event"] == "item")
    assert str(second.envelope.event_id) in resumed["data"]  # the next one, not the first again

    def no_streams_left() -> bool:
        return metric(Client(web.url).request("/metrics").body, "hub_web_sse_clients") == 0

    Deadline(30, "closed streams to be noticed").wait_for(no_streams_left, interval=0.5)
    assert metric(c.request("/metrics").body, "hub_web_items_pushed_total", receiver="socialtjanst") >= 2
    with stream(web, c.session, "/inbox/socialtjanst/1380/events", last_event_id="0:x") as r:
        assert r.status == 400


def test_health_readiness_metrics_and_security_headers(web: WebUnderTest, users: dict[str, Login]) -> None:
    c = Client(web.url)
    assert json.loads(c.request("/health").body) == {"status": "ok"}
    ready = c.request("/ready")
    assert ready.status == 200
    assert json.loads(ready.body)["ready"] is True
    text = c.request("/metrics").body
    for name in ("hub_web_requests_total", "hub_web_request_seconds_bucket", "hub_web_sse_clients",
                 "hub_web_logins_total"):  # fmt: skip
        assert name in text
    c.login(users["laholm-sig"])
    page = c.request("/inbox/sig/1381")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<script>" not in page.body  # no inline script: the policy forbids it
    missing = c.request("/no/such/page")
    assert missing.status == 404
    assert "Sidan finns inte" in missing.body


def test_new_user_prints_a_hashed_entry_the_settings_load(kafka_bootstrap: str, hub: HubUnderTest) -> None:
    done = subprocess.run([sys.executable, "-m", "hub.cli", "web", "--new-user", "varberg-vbe", "--receiver", "vbe",
                           "--municipality", "1383"], cwd=REPO, env=hub.env, capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    out = json.loads(done.stdout)
    assert out["user"] == "varberg-vbe"
    assert out["password"] not in json.dumps(out["entry"])
    settings = HubSettings.model_validate({"web": {"users": {"varberg-vbe": out["entry"]}}})
    user = settings.web.users["varberg-vbe"]
    assert (user.role, user.receiver, user.municipality) == ("coordinator", "vbe", "1383")
    assert verify_password(out["password"], user.password_hash)
    assert not verify_password(out["password"] + "x", user.password_hash)


def test_web_refuses_to_start_with_a_user_scoped_to_an_unknown_receiver(hub: HubUnderTest) -> None:
    env = {**hub.env, "HUB_WEB__USERS": json.dumps({"x": {"password_hash": "scrypt$2$1$1$AA$AA",
                                                          "receiver": "polisen", "municipality": "1381"}})}
    done = subprocess.run([sys.executable, "-m", "hub.cli", "web", "--port", "0"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "unknown receiver 'polisen'" in done.stderr
