"""Logging in: password hashes (scrypt), signed session cookies, and a brake on guessing.

Passwords are stored only as ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (``hashlib.scrypt``, base64 parts).
A session is a signed cookie (HMAC-SHA-256 over the user name, expiry, a random session id and a
fingerprint of the user's password hash): nothing is stored per session, so a restart keeps people logged
in, changing a password ends that user's sessions, and removing a user from the settings ends them at once.
Logging out revokes the session id in this process until the cookie would have expired anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hub.settings import WebUser

COOKIE_NAME = "hub_session"

_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
_MAX_N = 2**20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """The stored form of ``password``: a fresh salt, scrypt, and the parameters to check it again."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=256 * r * n)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; False for a wrong password or a malformed entry."""
    try:
        scheme, n_s, r_s, p_s, salt_s, digest_s = stored.split("$")
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt, digest = _unb64(salt_s), _unb64(digest_s)
    except (ValueError, binascii.Error):
        return False
    if scheme != "scrypt" or not (2 <= n <= _MAX_N) or not (1 <= r <= 32) or not (1 <= p <= 16) or not digest:
        return False
    try:
        candidate = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest),
                                   maxmem=256 * r * n)  # fmt: skip
    except ValueError:
        return False
    return hmac.compare_digest(candidate, digest)


# A real hash of a random password: checking an unknown user name costs as much as a known one.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def authenticate(users: Mapping[str, WebUser], username: str, password: str) -> WebUser | None:
    """The user entry when the name and password match, else None (in about the same time either way)."""
    user = users.get(username)
    ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    return user if ok and user is not None else None


def new_user_entry(role: str, receiver: str | None, municipality: str | None) -> tuple[str, dict[str, str | None]]:
    """A generated password and the ``HUB_WEB__USERS`` entry that stores it hashed."""
    password = secrets.token_urlsafe(12)
    entry: dict[str, str | None] = {"password_hash": hash_password(password), "role": role}
    if role == "coordinator":
        entry.update(receiver=receiver, municipality=municipality)
    WebUser.model_validate(entry)  # the entry must load as it is printed
    return password, entry


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Session:
    user: str
    sid: str
    expires: float


@dataclass
class SessionSigner:
    """Issues and checks session cookie values: ``<base64 JSON>.<base64 HMAC>``."""

    secret: bytes
    ttl_s: float
    clock: Callable[[], float] = time.time
    revoked: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._key = hmac.new(self.secret, b"samverkan-hub web session v1", hashlib.sha256).digest()

    def _sign(self, body: bytes) -> str:
        return _b64(hmac.new(self._key, body, hashlib.sha256).digest())

    def issue(self, username: str, user: WebUser) -> tuple[str, Session]:
        session = Session(username, secrets.token_urlsafe(16), self.clock() + self.ttl_s)
        body = json.dumps({"u": username, "sid": session.sid, "exp": int(session.expires),
                           "pw": _fingerprint(user.password_hash)}, separators=(",", ":")).encode()  # fmt: skip
        return f"{_b64(body)}.{self._sign(body)}", session

    def read(self, cookie: str | None, users: Mapping[str, WebUser]) -> Session | None:
        """The session a cookie value proves, or None (tampered, expired, revoked, user gone or changed)."""
        if not cookie or "." not in cookie or len(cookie) > 4096:
            return None
        body_s, signature = cookie.rsplit(".", 1)
        try:
            body = _unb64(body_s)
        except (ValueError, binascii.Error):
            return None
        if not hmac.compare_digest(self._sign(body), signature):
            return None
        try:
            data = json.loads(body)
            username, sid, expires, fingerprint = str(data["u"]), str(data["sid"]), float(data["exp"]), data["pw"]
        except (ValueError, KeyError, TypeError):
            return None
        user = users.get(username)
        now = self.clock()
        if user is None or expires <= now or sid in self.revoked or fingerprint != _fingerprint(user.password_hash):
            return None
        return Session(username, sid, expires)

    def revoke(self, session: Session) -> None:
        now = self.clock()
        self.revoked = {sid: exp for sid, exp in self.revoked.items() if exp > now}
        self.revoked[session.sid] = session.expires


@dataclass
class LoginThrottle:
    """At most ``max_failures`` failed logins per user name within ``window_s``; then refuse until they age."""

    max_failures: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, username: str) -> deque[float]:
        q = self.failures.setdefault(username, deque())
        while q and self.clock() - q[0] > self.window_s:
            q.popleft()
        return q

    def blocked(self, username: str) -> bool:
        return len(self._recent(username)) >= self.max_failures

    def failed(self, username: str) -> None:
        if len(self.failures) > 10000:  # guessed names must not grow this without bound
            self.failures = {u: q for u, q in self.failures.items() if q and self.clock() - q[-1] <= self.window_s}
        self._recent(username).append(self.clock())

    def succeeded(self, username: str) -> None:
        self.failures.pop(username, None)
