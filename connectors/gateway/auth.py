"""Bearer-token authentication of source units: tokens are configured hashed (SHA-256), optionally expiring.

Configuration (:attr:`hub.settings.IngestSettings.tokens`, ``HUB_INGEST__TOKENS``) maps a **source unit**
— ``polisen``, ``kriminalvarden`` or one municipality, ``kommun-1381`` — to entries ``"<sha256 hex>"`` or
``"<sha256 hex>@<ISO-8601 expiry>"``. A request authenticates as exactly one unit: a municipality's token
is that municipality's, never "kommun" in general. :func:`new_token` makes a token and its entry.

Each entry has a **credential id**, ``"<unit>:<first 12 hex digits of the token's SHA-256>"``
(:func:`credential_id`): what the gateway records with every event it publishes, so an audit can say which
credential sent it. The id identifies an entry without revealing the token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from hub.identity import SourceUnit, parse_unit

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
CREDENTIAL_DIGITS = 12
"""Hex digits of the token's SHA-256 in a credential id."""


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


def credential_id(unit: SourceUnit, digest: bytes) -> str:
    """``"kommun-1381:9f86d081884c"``: the unit and the first 12 hex digits of the token's SHA-256."""
    return f"{unit.name}:{digest.hex()[:CREDENTIAL_DIGITS]}"


@dataclass(frozen=True)
class TokenEntry:
    """One configured token of one source unit."""

    unit: SourceUnit
    digest: bytes
    expires: datetime | None

    @property
    def credential(self) -> str:
        """This entry's credential id (:func:`credential_id`)."""
        return credential_id(self.unit, self.digest)


@dataclass(frozen=True)
class AuthResult:
    """The outcome: ``ok`` with the source unit and credential id, or why not (``missing``, ``invalid``,
    ``expired``; an expired token still names its unit and credential, for the log)."""

    status: Literal["ok", "missing", "invalid", "expired"]
    unit: SourceUnit | None = None
    credential: str | None = None
    """``"<unit>:<12 hex digits>"``: which configured token this was (never the token itself)."""

    @property
    def agency(self) -> str | None:
        """The agency of the unit (``kommun`` for ``kommun-1381``): what ``envelope.source_agency`` becomes."""
        return self.unit.agency if self.unit is not None else None


def parse_entry(unit: SourceUnit, entry: str) -> TokenEntry:
    """Parse one configured entry; ValueError (without the entry's text) when malformed."""
    digest, sep, expiry = entry.strip().partition("@")
    digest = digest.lower()
    if not _HEX64.match(digest):
        raise ValueError(f"HUB_INGEST__TOKENS: a token entry of {unit.name!r} is not a 64-hex-digit SHA-256 digest")
    expires: datetime | None = None
    if sep:
        try:
            expires = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"HUB_INGEST__TOKENS: a token entry of {unit.name!r} has an invalid ISO-8601 "
                             "expiry") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
    return TokenEntry(unit, bytes.fromhex(digest), expires)


def configured_unit(name: str, codes: Iterable[str]) -> SourceUnit:
    """The source unit a ``HUB_INGEST__TOKENS`` key names; ValueError naming the key and the choices."""
    try:
        return parse_unit(name, codes)
    except ValueError as exc:
        raise ValueError(f"HUB_INGEST__TOKENS key {name!r}: {exc}") from None


def parse_tokens(tokens: dict[str, list[str]], codes: Iterable[str]) -> list[TokenEntry]:
    """Every configured entry; ValueError when a key is not a served unit, an entry is malformed, or one
    token is configured for two units (then which unit a request is from would be a guess)."""
    codes = list(codes)
    entries: list[TokenEntry] = []
    for name, items in tokens.items():
        unit = configured_unit(name, codes)
        entries.extend(parse_entry(unit, item) for item in items)
    owners: dict[bytes, SourceUnit] = {}
    for entry in entries:
        owner = owners.setdefault(entry.digest, entry.unit)
        if owner != entry.unit:
            raise ValueError(f"HUB_INGEST__TOKENS: the same token is configured for source units "
                             f"{owner.name!r} and {entry.unit.name!r}")
    return entries


class Authenticator:
    """Checks ``Authorization: Bearer <token>`` headers against the configured digests.

    ``tokens`` is :attr:`hub.settings.IngestSettings.tokens`, keyed by source unit; ``codes`` the served
    municipalities (which ``kommun-XXXX`` units exist). A bad configuration raises ValueError here, at start.
    """

    def __init__(self, tokens: dict[str, list[str]], codes: Iterable[str]) -> None:
        self.entries = parse_tokens(tokens, codes)

    def authenticate(self, header: str | None, now: datetime | None = None) -> AuthResult:
        """The unit and credential of a valid, unexpired token; else why not."""
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
            return AuthResult("ok", valid.unit, valid.credential)
        if expired is not None:
            return AuthResult("expired", expired.unit, expired.credential)
        return AuthResult("invalid")
