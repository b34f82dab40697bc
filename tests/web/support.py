"""Running `hub web` as a user runs it (a subprocess) against a hub under test, and talking to it over HTTP."""

from __future__ import annotations

import http.cookies
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.deadline import Deadline
from hub.kafka.local import free_port
from hub.web.auth import COOKIE_NAME, hash_password
from tests.hub.support import REPO, HubUnderTest

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    entry: dict[str, Any]


def make_users(specs: dict[str, dict[str, Any]]) -> dict[str, Login]:
    """A generated password per user and the hashed settings entry that goes to HUB_WEB__USERS."""
    logins = {}
    for name, scope in specs.items():
        password = f"pw-{name}-{free_port()}"
        logins[name] = Login(name, password, {"password_hash": hash_password(password), **scope})
    return logins


@dataclass
class WebUnderTest:
    hub: HubUnderTest
    users: dict[str, Login]
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.hub.state_dir / f"web-{self.port}.log"

    def env(self) -> dict[str, str]:
        return {
            **self.hub.env,
            "HUB_WEB__USERS": json.dumps({n: u.entry for n, u in self.users.items()}),
            "HUB_WEB__SESSION_SECRET": f"test-secret-{self.port}",
            "HUB_WEB__WORKER_METRICS_URL": f"http://127.0.0.1:{self.hub.web_port}/metrics",
            "HUB_WEB__OPERATOR_CACHE_S": "0",
            **self.extra_env,
        }

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "web", "--port", str(self.port)], cwd=REPO, env=self.env(),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        Deadline(60, "hub web to be ready").wait_for(self._ready, interval=0.3)

    def _ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"hub web exited:\n{self.log()}"
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=3) as r:  # noqa: S310 - our own http URL
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Reply:
    status: int
    headers: Any
    body: str


class Client:
    """A browser-less client holding the session cookie itself (urllib's cookie jar would not send a Secure
    cookie over plain HTTP, browsers do to 127.0.0.1); redirects are returned, not followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session: str | None = None
        self.opener = urllib.request.build_opener(_NoRedirect)

    def request(self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> Reply:  # fmt: skip
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {})  # noqa: S310 - http only
        if self.session is not None:
            req.add_header("Cookie", f"{COOKIE_NAME}={self.session}")
        try:
            with self.opener.open(req, timeout=timeout) as r:
                reply = Reply(r.status, r.headers, r.read().decode())
        except urllib.error.HTTPError as exc:
            reply = Reply(exc.code, exc.headers, exc.read().decode(errors="replace"))
        for header in reply.headers.get_all("Set-Cookie") or []:
            cookie = http.cookies.SimpleCookie(header)
            if COOKIE_NAME in cookie:
                self.session = cookie[COOKIE_NAME].value or None
        return reply

    def login(self, login: Login) -> Reply:
        reply = self.request("/login", {"username": login.username, "password": login.password})
        assert reply.status == 303, (reply.status, reply.body[:500])
        assert self.session, "no session cookie"
        return reply


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
