"""Bearer-token authentication of agencies: tokens are configured hashed (SHA-256), optionally expiring.

Configuration (:attr:`hub.settings.IngestSettings.tokens`) maps an agency to entries ``"<sha256 hex>"``
or ``"<sha256 hex>@<ISO-8601 expiry>"``. :func:`new_token` makes a token and its entry.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from hub.topics import AGENCIES

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (what the configuration stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(expires: datetime | None = None) -> tuple[str, str]:
    """A fresh random token and its configuration entry (``digest`` or ``digest@expiry``)."""
    token = secrets.token_urlsafe(32)
    entry = hash_token(token)
    if expires is not None:
        entry += "@" + expires.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return token, entry


@dataclass(frozen=True)
class TokenEntry:
    agency: str
    digest: bytes
    expires: datetime | None


@dataclass(frozen=True)
class AuthResult:
    """The outcome: ``ok`` with the agency, or why not (``missing``, ``invalid``, ``expired``)."""

    status: Literal["ok", "missing", "invalid", "expired"]
    agency: str | None = None


def parse_entry(agency: str, entry: str) -> TokenEntry:
    """Parse one configured entry; ValueError (without the entry's text) when malformed."""
    digest, sep, expiry = entry.strip().partition("@")
    digest = digest.lower()
    if not _HEX64.match(digest):
        raise ValueError(f"a token entry of agency {agency!r} is not a 64-hex-digit SHA-256 digest")
    expires: datetime | None = None
    if sep:
        try:
            expires = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"a token entry of agency {agency!r} has an invalid ISO-8601 expiry") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
    return TokenEntry(agency, bytes.fromhex(digest), expires)


class Authenticator:
    """Checks ``Authorization: Bearer <token>`` headers against the configured digests."""

    def __init__(self, tokens: dict[str, list[str]]) -> None:
        entries: list[TokenEntry] = []
        for agency, items in tokens.items():
            if agency not in AGENCIES:
                raise ValueError(f"token configured for unknown agency {agency!r}; agencies: {AGENCIES}")
            entries.extend(parse_entry(agency, item) for item in items)
        owners: dict[bytes, str] = {}
        for entry in entries:  # one token, one agency: otherwise which agency a request is from is a guess
            owner = owners.setdefault(entry.digest, entry.agency)
            if owner != entry.agency:
                raise ValueError(f"the same token is configured for agencies {owner!r} and {entry.agency!r}")
        self.entries = entries

    def authenticate(self, header: str | None, now: datetime | None = None) -> AuthResult:
        if not header:
            return AuthResult("missing")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return AuthResult("invalid")
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        when = now or datetime.now(UTC)
        valid: TokenEntry | None = None
        expired: TokenEntry | None = None
        for entry in self.entries:  # compare with every entry: time does not depend on which matched
            if hmac.compare_digest(presented, entry.digest):
                if entry.expires is not None and when >= entry.expires:
                    expired = expired or entry
                else:
                    valid = valid or entry
        if valid is not None:
            return AuthResult("ok", valid.agency)
        if expired is not None:
            return AuthResult("expired", expired.agency)
        return AuthResult("invalid")
