"""What every handler shares (settings, session signer, metrics) and the guards each page starts with."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from hub import identity
from hub.access import AccessLog, Read, web_accessor
from hub.contract.outputs import AccessChannel, AccessPhase
from hub.contract.serde import Serde
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.settings import HubSettings
from hub.topics import Topics
from hub.web.auth import COOKIE_NAME, LoginThrottle, Session, SessionSigner
from hub.web.metrics import WebMetrics
from hub.web.scope import Scope
from hub.web.templates import error_page


@dataclass
class WebState:
    settings: HubSettings
    bootstrap: str
    signer: SessionSigner
    throttle: LoginThrottle
    metrics: WebMetrics = field(default_factory=WebMetrics)
    serde: Serde = field(default_factory=Serde)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _access: AccessLog | None = None

    @property
    def access(self) -> AccessLog:
        """Where every read shown to a user is recorded first (``hub.access``, as ``web``): :mod:`hub.access`."""
        if self._access is None:
            self._access = AccessLog(self.kafka(), self.topics)
        return self._access

    def read(self, scope: Scope, channel: AccessChannel, target: str, receiver: str | None = None,
             municipality_code: str | None = None) -> Read:  # fmt: skip
        return Read(web_accessor(scope.username), channel, target, receiver, municipality_code)

    async def record_view(self, read: Read, items: int, event_ids: list[str] | None = None) -> None:
        """Record a page's read before the page is sent; a KafkaError (the middleware's 503) when it cannot be."""
        await self.access.record(read, AccessPhase.view, items=items, event_ids=event_ids or [])

    def kafka(self, principal: str = identity.WEB) -> KafkaAccess:
        """Kafka as ``principal``: the web app reads each inbox as that inbox's own principal (``sig-1381``), so
        the broker, not only this app, keeps a coordinator to their own inbox; the operations page as ``web``."""
        if principal == identity.WEB:
            return clients.access_for(self.settings, identity.WEB, bootstrap=self.bootstrap)
        return clients.access_as(self.settings, principal, bootstrap=self.bootstrap)

    def inbox_kafka(self, receiver: str, code: str) -> KafkaAccess:
        return self.kafka(identity.receiver_principal(receiver, code))

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_namespace)

    @property
    def codes(self) -> list[str]:
        return [*self.settings.municipality_codes, self.settings.county_code]

    def session(self, request: web.Request) -> Session | None:
        return self.signer.read(request.cookies.get(COOKIE_NAME), self.settings.web.users)

    def scope(self, request: web.Request) -> Scope | None:
        session = self.session(request)
        return None if session is None else self.scope_for(session.user)

    def scope_for(self, username: str) -> Scope:
        return Scope(username, self.settings.web.users[username])

    def still_valid(self, session: Session) -> bool:
        """For long-lived streams: the session has not expired or been logged out since it was checked."""
        return session.expires > self.signer.clock() and session.sid not in self.signer.revoked


STATE: web.AppKey[WebState] = web.AppKey("web_state", WebState)


def html_response(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html")


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "other"


def require_page(request: web.Request) -> Scope:
    """The logged-in user's scope; an anonymous visitor is sent to the login page (and back after)."""
    scope = request.app[STATE].scope(request)
    if scope is None:
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='/')}")
    return scope


def require_api(request: web.Request) -> Scope:
    """The logged-in user's scope; 401 for an anonymous request (streams and images cannot redirect)."""
    scope = request.app[STATE].scope(request)
    if scope is None:
        raise web.HTTPUnauthorized(text="inloggning krävs", content_type="text/plain")
    return scope


def forbid(request: web.Request, scope: Scope) -> web.HTTPForbidden:
    """403 for a request outside ``scope`` (counted), as a Swedish page."""
    request.app[STATE].metrics.forbidden.labels(_route(request)).inc()
    return web.HTTPForbidden(text=error_page(403, scope), content_type="text/html")


def not_found(scope: Scope | None) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=error_page(404, scope), content_type="text/html")
