"""Password hashes, session cookies and the login brake, without a server."""

from __future__ import annotations

import base64
import json

import pytest

from hub.settings import WebUser
from hub.web.auth import LoginThrottle, SessionSigner, authenticate, hash_password, verify_password
from hub.web.scope import Scope


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


RIGHT = "rätt lösenord"


def user(password: str = RIGHT, **scope: str) -> WebUser:
    return WebUser(password_hash=hash_password(password, n=2**10),
                   **(scope or {"receiver": "sig", "municipality": "1381"}))  # type: ignore[arg-type]


def test_passwords_are_stored_salted_and_checked_exactly() -> None:
    stored = hash_password("hemligt")
    assert stored.startswith("scrypt$16384$8$1$")
    assert "hemligt" not in stored
    assert stored != hash_password("hemligt")  # a fresh salt each time
    assert verify_password("hemligt", stored)
    assert not verify_password("Hemligt", stored)
    assert not verify_password("", stored)
    for broken in ("", "plain", "scrypt$x$8$1$AA$AA", "md5$16384$8$1$AA$AA", stored.rsplit("$", 1)[0] + "$",
                   "scrypt$4294967296$8$1$AA$AA"):  # fmt: skip
        assert not verify_password("hemligt", broken)


def test_authenticate_answers_none_for_unknown_names_and_wrong_passwords() -> None:
    users = {"laholm-sig": user()}
    assert authenticate(users, "laholm-sig", "rätt lösenord") is users["laholm-sig"]
    assert authenticate(users, "laholm-sig", "fel") is None
    assert authenticate(users, "okänd", "rätt lösenord") is None


def test_a_session_cookie_proves_the_user_until_it_expires() -> None:
    clock = Clock()
    users = {"laholm-sig": user()}
    signer = SessionSigner(b"secret", ttl_s=3600, clock=clock)
    cookie, session = signer.issue("laholm-sig", users["laholm-sig"])
    assert signer.read(cookie, users) == session
    clock.now += 3599
    assert signer.read(cookie, users) == session
    clock.now += 2
    assert signer.read(cookie, users) is None


@pytest.mark.parametrize("change", ["tamper", "other-secret", "user-removed", "password-changed", "revoked"])
def test_a_session_cookie_stops_working_when(change: str) -> None:
    users = {"laholm-sig": user(), "halmstad-soc": user(receiver="socialtjanst", municipality="1380")}
    signer = SessionSigner(b"secret", ttl_s=3600, clock=Clock())
    cookie, session = signer.issue("laholm-sig", users["laholm-sig"])
    if change == "tamper":  # claim to be another user under the same signature
        body, signature = cookie.split(".")
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        data["u"] = "halmstad-soc"
        cookie = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode() + "." + signature
    elif change == "other-secret":
        signer = SessionSigner(b"another secret", ttl_s=3600, clock=signer.clock)
    elif change == "user-removed":
        users.pop("laholm-sig")
    elif change == "password-changed":
        users["laholm-sig"] = user("nytt lösenord")
    else:
        signer.revoke(session)
    assert signer.read(cookie, users) is None
    assert signer.read("", users) is None
    assert signer.read("no-dot", users) is None


def test_the_login_brake_counts_failures_per_name_within_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert not throttle.blocked("laholm-sig")
        throttle.failed("laholm-sig")
    assert throttle.blocked("laholm-sig")
    assert not throttle.blocked("halmstad-soc")
    clock.now += 61
    assert not throttle.blocked("laholm-sig")
    throttle.failed("laholm-sig")
    throttle.succeeded("laholm-sig")
    assert not throttle.failures.get("laholm-sig")


def test_scopes_are_one_receiver_in_one_municipality_or_operations() -> None:
    laholm_sig = Scope("laholm-sig", user())
    assert laholm_sig.may_see_inbox("sig", "1381")
    assert not laholm_sig.may_see_inbox("sig", "1380")
    assert not laholm_sig.may_see_inbox("socialtjanst", "1381")
    assert not laholm_sig.may_see_lagesbild("1381")
    assert not laholm_sig.may_operate()
    assert laholm_sig.home() == "/inbox/sig/1381"
    county = Scope("lan", user(receiver="lagesbild", municipality="13"))
    assert county.may_see_lagesbild("13")
    assert not county.may_see_lagesbild("1381")
    assert county.home() == "/lagesbild/13"
    operator = Scope("drift", WebUser(password_hash="x", role="operator"))
    assert operator.may_operate()
    assert not operator.may_see_inbox("sig", "1381")
    assert operator.home() == "/operator"


def test_user_entries_must_carry_a_complete_scope() -> None:
    with pytest.raises(ValueError, match="needs a receiver and a municipality"):
        WebUser(password_hash="x", receiver="sig")
    with pytest.raises(ValueError, match="an operator has no receiver"):
        WebUser(password_hash="x", role="operator", receiver="sig", municipality="1381")
