"""Bearer-token authentication of source units: tokens are configured hashed (SHA-256), optionally expiring.

Configuration (:attr:`hub.settings.IngestSettings.tokens`, ``HUB_INGEST__TOKENS``) maps a **source unit**
— ``polisen``, ``kriminalvarden`` or one municipality, ``kommun-1381`` — to entries ``"<sha256 hex>"`` or
``"<sha256 hex>@<ISO-8601 expiry>"``. A request authenticates as exactly one unit: a municipality's token
is that municipality's, never "kommun" in general. :func:`new_token` makes a token and its entry, which
always carries an expiry (by default 90 days on, :data:`DEFAULT_TOKEN_LIFETIME`); an entry without one is
valid until removed, and the gateway warns about each at start.

A **tokens file** (JSON of the same shape) may hold entries besides the setting's: the gateway re-reads it
when it changes (checked at most once a second, on a request), so credentials are added and revoked
without a restart (:class:`Authenticator`).

Each entry has a **credential id**, ``"<unit>:<first 12 hex digits of the token's SHA-256>"``
(:func:`credential_id`): what the gateway records with every event it publishes, so an audit can say which
credential sent it. The id identifies an entry without revealing the token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from hub.identity import SourceUnit, parse_unit

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
CREDENTIAL_DIGITS = 12
"""Hex digits of the token's SHA-256 in a credential id."""
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
"""How long a token made by :func:`new_token` (``hub ingest --new-token``) is valid unless told otherwise."""
TOKENS_SETTING = "HUB_INGEST__TOKENS"
TOKENS_FILE_SETTING = "HUB_INGEST__TOKENS_FILE"


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (what the configuration stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(
    expires: datetime | None = None, *, lifetime: timedelta = DEFAULT_TOKEN_LIFETIME, now: datetime | None = None
) -> tuple[str, str]:
    """A fresh random token and its configuration entry ``digest@expiry``: it expires at ``expires``, or
    ``lifetime`` (90 days) from ``now`` (the current time). A naive ``expires`` is local time."""
    token = secrets.token_urlsafe(32)
    until = expires if expires is not None else (now or datetime.now(UTC)) + lifetime
    return token, hash_token(token) + "@" + until.astimezone(UTC).isoformat().replace("+00:00", "Z")


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


def parse_entry(unit: SourceUnit, entry: str, source: str = TOKENS_SETTING) -> TokenEntry:
    """Parse one configured entry; ValueError (naming ``source``, without the entry's text) when malformed."""
    if not isinstance(entry, str):
        raise ValueError(f"{source}: a token entry of {unit.name!r} is not a string")
    digest, sep, expiry = entry.strip().partition("@")
    digest = digest.lower()
    if not _HEX64.match(digest):
        raise ValueError(f"{source}: a token entry of {unit.name!r} is not a 64-hex-digit SHA-256 digest")
    expires: datetime | None = None
    if sep:
        try:
            expires = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{source}: a token entry of {unit.name!r} has an invalid ISO-8601 "
                             "expiry") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
    return TokenEntry(unit, bytes.fromhex(digest), expires)


def configured_unit(name: str, codes: Iterable[str], source: str = TOKENS_SETTING) -> SourceUnit:
    """The source unit a ``HUB_INGEST__TOKENS`` key names; ValueError naming the key and the choices."""
    try:
        return parse_unit(name, codes)
    except ValueError as exc:
        raise ValueError(f"{source} key {name!r}: {exc}") from None


def parse_tokens(tokens: dict[str, list[str]], codes: Iterable[str], source: str = TOKENS_SETTING) -> list[TokenEntry]:
    """Every configured entry; ValueError when a key is not a served unit, an entry is malformed, or one
    token is configured for two units (then which unit a request is from would be a guess)."""
    codes = list(codes)
    entries: list[TokenEntry] = []
    for name, items in tokens.items():
        unit = configured_unit(name, codes, source)
        if not isinstance(items, list):
            raise ValueError(f"{source}: the entries of {unit.name!r} are not a JSON list")
        entries.extend(parse_entry(unit, item, source) for item in items)
    check_one_unit_per_token(entries, source)
    return entries


def check_one_unit_per_token(entries: Iterable[TokenEntry], source: str = TOKENS_SETTING) -> None:
    """ValueError when one token is configured for two units (which unit a request is from would be a guess)."""
    owners: dict[bytes, SourceUnit] = {}
    for entry in entries:
        owner = owners.setdefault(entry.digest, entry.unit)
        if owner != entry.unit:
            raise ValueError(f"{source}: the same token is configured for source units "
                             f"{owner.name!r} and {entry.unit.name!r}")


def read_tokens_file(path: Path, codes: Iterable[str]) -> list[TokenEntry]:
    """The entries of a tokens file: a JSON object shaped like ``HUB_INGEST__TOKENS``; ValueError (naming the
    file and what is wrong, never an entry's text) when it cannot be read or is malformed."""
    source = f"{TOKENS_FILE_SETTING} {path}"
    try:
        data: Any = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"{source}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except ValueError:
        raise ValueError(f"{source}: not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a JSON object of source unit -> token entries")
    return parse_tokens(data, codes, source)


def warn_without_expiry(entries: Iterable[TokenEntry], source: str) -> None:
    """One WARNING per entry that never expires (by credential id, never the digest)."""
    for entry in entries:
        if entry.expires is None:
            log.warning("ingest: token %s in %s has no expiry: it is valid until removed; replace it by one "
                        "from `hub ingest --new-token %s` (valid %d days)", entry.credential, source,
                        entry.unit.name, DEFAULT_TOKEN_LIFETIME.days)


FileStamp = tuple[int, int, int]
"""What says a file changed: (modification time in ns, size, inode)."""


class Authenticator:
    """Checks ``Authorization: Bearer <token>`` headers against the configured digests.

    ``tokens`` is :attr:`hub.settings.IngestSettings.tokens`, keyed by source unit; ``codes`` the served
    municipalities (which ``kommun-XXXX`` units exist). ``tokens_file``, when given, holds more entries
    (JSON of the same shape): it is looked at again at most every ``check_interval_s`` seconds, on
    :meth:`authenticate`, and re-read when its modification time, size or inode changed — a token added
    there is accepted, one removed is refused (401), without a restart. A file that became unreadable or
    malformed leaves the last good entries in force (an ERROR is logged each time it changes); a file that
    was deleted revokes all of its entries (fail closed).

    A bad configuration raises ValueError here, at start: a malformed setting or file, a missing file,
    one token for two units.
    """

    def __init__(
        self, tokens: dict[str, list[str]], codes: Iterable[str], *, tokens_file: Path | None = None,
        check_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.codes = list(codes)
        self.configured = parse_tokens(tokens, self.codes)
        self.tokens_file = tokens_file
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._file_entries: list[TokenEntry] = []
        self._stamp: FileStamp | None = None
        self._checked_at = clock()
        if tokens_file is not None:
            self._stamp = self._stat(tokens_file)
            if self._stamp is None:
                raise ValueError(f"{TOKENS_FILE_SETTING} {tokens_file}: no such file")
            self._file_entries = read_tokens_file(tokens_file, self.codes)
        self.entries = [*self.configured, *self._file_entries]
        check_one_unit_per_token(self.entries, f"{TOKENS_SETTING} and {TOKENS_FILE_SETTING}")

    def warn_without_expiry(self) -> None:
        """One WARNING per configured entry that never expires (what the gateway says at start)."""
        warn_without_expiry(self.configured, TOKENS_SETTING)
        if self.tokens_file is not None:
            warn_without_expiry(self._file_entries, f"{TOKENS_FILE_SETTING} {self.tokens_file}")

    @staticmethod
    def _stat(path: Path) -> FileStamp | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the tokens file if it changed (at most once per ``check_interval_s`` unless ``force``);
        True when the entries in force changed."""
        if self.tokens_file is None:
            return False
        now = self._clock()
        if not force and now - self._checked_at < self.check_interval_s:
            return False
        self._checked_at = now
        stamp = self._stat(self.tokens_file)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        where = f"{TOKENS_FILE_SETTING} {self.tokens_file}"
        if stamp is None:
            if not self._file_entries:
                return False
            log.warning("ingest: %s is gone: its %d token(s) are revoked", where, len(self._file_entries))
            self._file_entries = []
        else:
            try:
                entries = read_tokens_file(self.tokens_file, self.codes)
                check_one_unit_per_token([*self.configured, *entries], f"{TOKENS_SETTING} and {where}")
            except ValueError as exc:
                log.error("ingest: %s; the tokens read from it before stay in force", exc)
                return False
            known = {(e.unit, e.digest) for e in self._file_entries}
            warn_without_expiry([e for e in entries if (e.unit, e.digest) not in known], where)
            log.info("ingest: %s re-read: %d token(s) of %d source unit(s)", where, len(entries),
                     len({e.unit for e in entries}))
            self._file_entries = entries
        self.entries = [*self.configured, *self._file_entries]
        return True

    def authenticate(self, header: str | None, now: datetime | None = None) -> AuthResult:
        """The unit and credential of a valid, unexpired token; else why not."""
        self.refresh()
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
