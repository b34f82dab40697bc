"""The web application: routes, login and logout, security headers, metrics, health, and serving it.

Routes (pages in Swedish; see docs/web.md):

- ``/login`` (form, POST), ``/logout`` (POST), ``/`` (to the user's own start page)
- ``/inbox/{receiver}/{code}`` and its live stream ``/inbox/{receiver}/{code}/events`` (:mod:`hub.web.inbox`)
- ``/lagesbild/{code}`` and its chart ``/lagesbild/{code}/chart.svg`` (:mod:`hub.web.lagesbild_page`)
- ``/operator`` (:mod:`hub.web.operator_page`)
- ``/health``, ``/ready`` (Kafka answers), ``/metrics`` (Prometheus) — open, for the operators' monitoring
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiokafka.errors import KafkaError

from hub.kafka.clients import bootstrap_of
from hub.kafka.metadata import cluster_answers
from hub.logsafety import protect_kafka_logs
from hub.rules.receivers import RECEIVERS
from hub.serving import prometheus_response, serve_until_stopped
from hub.settings import DEV_SECRET, HubSettings
from hub.web.assets import APP_CSS, APP_JS
from hub.web.auth import COOKIE_NAME, LoginThrottle, SessionSigner, authenticate
from hub.web.inbox import inbox_events, inbox_page
from hub.web.lagesbild_page import lagesbild_chart, lagesbild_page
from hub.web.operator_page import OPERATOR, OperatorData, operator_page
from hub.web.state import STATE, WebState, html_response, not_found
from hub.web.templates import error_page, login_page

log = logging.getLogger(__name__)

SSE_ROUTE = "/inbox/{receiver}/{code}/events"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")  # fmt: skip


def check_users(settings: HubSettings) -> None:
    """Refuse to start with a user whose scope names an unknown receiver or municipality."""
    codes = {*settings.municipality_codes, settings.county_code}
    for name, user in settings.web.users.items():
        if user.receiver is not None and user.receiver not in RECEIVERS:
            raise ValueError(f"web user {name!r}: unknown receiver {user.receiver!r}")
        if user.municipality is not None and user.municipality not in codes:
            raise ValueError(f"web user {name!r}: municipality {user.municipality!r} is not served by this hub")


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "other"


def _safe_next(path: str) -> str | None:
    """A local path to return to after login, or None (no open redirects to other sites)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(ord(c) < 32 for c in path):
        return None
    return path


class Handlers:
    def __init__(self, state: WebState) -> None:
        self.state = state
        self._ready_cache: tuple[float, bool] = (0.0, False)

    # -- middleware and headers ----------------------------------------------------------------------

    @web.middleware
    async def observe(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Count and time every request; refuse cross-site form posts; Swedish 404 pages."""
        metrics = self.state.metrics
        route = _route(request)
        started = time.perf_counter()
        status = 500
        try:
            if request.method == "POST" and not self._same_origin(request):
                raise web.HTTPForbidden(text=error_page(403), content_type="text/html")
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPNotFound as exc:
            status = exc.status
            if exc.content_type == "text/html":
                raise
            raise not_found(self.state.scope(request)) from None
        except web.HTTPException as exc:
            status = exc.status
            raise
        except KafkaError as exc:
            status = 503
            log.warning("web: %s %s: Kafka unavailable (%s)", request.method, route, type(exc).__name__)
            raise web.HTTPServiceUnavailable(text=error_page(503, self.state.scope(request)),
                                             content_type="text/html", headers={"Retry-After": "5"}) from None
        finally:
            metrics.requests.labels(route, str(status)).inc()
            if route != SSE_ROUTE:
                metrics.latency.labels(route).observe(time.perf_counter() - started)

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == request.host

    @staticmethod
    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" would make Origin "null"

    # -- login ---------------------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        scope = self.state.scope(request)
        raise web.HTTPSeeOther(scope.home() if scope else "/login")

    async def login_form(self, request: web.Request) -> web.Response:
        scope = self.state.scope(request)
        if scope is not None:
            raise web.HTTPSeeOther(scope.home())
        return html_response(login_page(next_path=_safe_next(request.query.get("next", "")) or ""))

    async def login(self, request: web.Request) -> web.Response:
        state = self.state
        form = await request.post()
        username = str(form.get("username", ""))[:200].strip()
        password = str(form.get("password", ""))[:1024]
        next_path = _safe_next(str(form.get("next", "")))
        users = state.settings.web.users
        if state.throttle.blocked(username):
            state.metrics.login_failures.labels("throttled").inc()
            log.warning("web: login refused, too many failures for %s", "a configured user" if username in users
                        else "an unknown user name")  # fmt: skip
            return html_response(login_page("För många misslyckade försök. Vänta en stund och försök igen.",
                                            next_path or "", username), status=429)  # fmt: skip
        user = await asyncio.to_thread(authenticate, users, username, password)
        if user is None:
            state.throttle.failed(username)
            state.metrics.login_failures.labels("wrong_credentials").inc()
            # A guessed user name can be a mistyped password: only configured names are logged.
            log.info("web: failed login for %s", repr(username) if username in users else "an unknown user name")
            return html_response(login_page("Fel användarnamn eller lösenord.", next_path or "", username),
                                 status=401)  # fmt: skip
        state.throttle.succeeded(username)
        state.metrics.logins.inc()
        cookie, _session = state.signer.issue(username, user)
        scope = state.scope_for(username)
        response = web.Response(status=303, headers={"Location": next_path or scope.home()})
        response.set_cookie(COOKIE_NAME, cookie, max_age=int(state.settings.web.session_ttl_s), path="/",
                            httponly=True, secure=state.settings.web.cookie_secure, samesite="Strict")  # fmt: skip
        log.info("web: %r logged in", username)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session = self.state.session(request)
        if session is not None:
            self.state.signer.revoke(session)
            log.info("web: %r logged out", session.user)
        response = web.Response(status=303, headers={"Location": "/login"})
        response.del_cookie(COOKIE_NAME, path="/", secure=self.state.settings.web.cookie_secure, httponly=True,
                            samesite="Strict")  # fmt: skip
        return response

    # -- operations endpoints ------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        at, ok = self._ready_cache
        if time.monotonic() - at > 2.0:
            ok = await cluster_answers(self.state.kafka(), timeout_s=2.0)
            self._ready_cache = (time.monotonic(), ok)
        return web.json_response({"ready": ok, "broker_reachable": ok}, status=200 if ok else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return prometheus_response(self.state.metrics.registry)

    @staticmethod
    async def script(request: web.Request) -> web.Response:
        return web.Response(text=APP_JS, content_type="text/javascript", headers={"Cache-Control": "max-age=300"})

    @staticmethod
    async def stylesheet(request: web.Request) -> web.Response:
        return web.Response(text=APP_CSS, content_type="text/css", headers={"Cache-Control": "max-age=300"})


def create_app(settings: HubSettings, *, bootstrap: str | None = None, state: WebState | None = None
               ) -> web.Application:  # fmt: skip
    """The web application for ``settings`` (users, namespace, cookie policy); raises ValueError for a user
    whose scope names an unknown receiver or municipality."""
    protect_kafka_logs()
    check_users(settings)
    web_settings = settings.web
    state = state or WebState(
        settings, bootstrap or bootstrap_of(settings),
        SessionSigner(web_settings.session_secret.get_secret_value().encode(), web_settings.session_ttl_s),
        LoginThrottle(web_settings.login_max_failures, web_settings.login_failure_window_s),
    )  # fmt: skip
    handlers = Handlers(state)
    operator = OperatorData(state)
    app = web.Application(middlewares=[handlers.observe], client_max_size=64 * 1024)
    app[STATE] = state
    app[OPERATOR] = operator
    app.on_response_prepare.append(handlers.security_headers)
    sampler: list[asyncio.Task[None]] = []

    async def start(_: web.Application) -> None:
        sampler.append(asyncio.create_task(operator.sample_forever()))
        sampler.append(asyncio.create_task(operator.check_forever()))

    async def shutdown(_: web.Application) -> None:
        state.stop.set()  # live streams and the sampler end within a second

    async def cleanup(_: web.Application) -> None:
        for task in sampler:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await state.access.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    r = app.router
    r.add_get("/", handlers.home)
    r.add_get("/login", handlers.login_form)
    r.add_post("/login", handlers.login)
    r.add_post("/logout", handlers.logout)
    r.add_get("/inbox/{receiver}/{code}", inbox_page)
    r.add_get(SSE_ROUTE, inbox_events)
    r.add_get("/lagesbild/{code}", lagesbild_page)
    r.add_get("/lagesbild/{code}/chart.svg", lagesbild_chart)
    r.add_get("/operator", operator_page)
    r.add_get("/static/app.js", handlers.script)
    r.add_get("/static/app.css", handlers.stylesheet)
    r.add_get("/health", handlers.health)
    r.add_get("/ready", handlers.ready)
    r.add_get("/metrics", handlers.metrics)
    return app


async def serve(
    settings: HubSettings, *, host: str | None = None, port: int | None = None, stop: asyncio.Event | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:  # fmt: skip
    """Run the web app until SIGTERM/SIGINT (or ``stop``); live streams are ended, then the server stops."""
    app = create_app(settings)
    if not settings.web.users:
        log.warning("web: no users configured (HUB_WEB__USERS); nobody can log in")
    if settings.web.session_secret.get_secret_value() == DEV_SECRET:
        log.warning("web: HUB_WEB__SESSION_SECRET is the development default; set a secret of your own")
    await serve_until_stopped(
        app, host or settings.web.host, settings.web.port if port is None else port, name="web app",
        shutdown_timeout=5.0, stop=stop, on_listening=on_listening,
        detail=f"Kafka {app[STATE].bootstrap}, {len(settings.web.users)} users",
    )  # fmt: skip


def run_web(settings: HubSettings, *, host: str | None = None, port: int | None = None) -> int:
    """Blocking entry point for ``hub web``: serve until a signal; 0, or 2 for a bad user configuration."""
    try:
        check_users(settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    asyncio.run(serve(settings, host=host, port=port,
                      on_listening=lambda address: print(json.dumps({"listening": address}), flush=True)))
    return 0
