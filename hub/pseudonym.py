"""Keyed pseudonyms: one HMAC key per receiver, so two receivers can never join their data on a person.

``person_key`` is the hub's internal key for a person (Kafka message keys, consent table keys): it keeps
the personnummer out of keys and changelogs.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from hub.settings import HubSettings


def _derive(master: bytes, purpose: str) -> bytes:
    return hmac.new(master, purpose.encode(), hashlib.sha256).digest()


class Pseudonymiser:
    """Pseudonyms per receiver and the internal person key, from the hub's settings."""

    def __init__(self, settings: HubSettings) -> None:
        master = settings.secret_key.get_secret_value().encode()
        self._person_key = _derive(master, "person-key")
        self._explicit = {r: k.get_secret_value().encode() for r, k in settings.pseudonym_keys.items()}
        self._master = master
        self.pseudonym = lru_cache(maxsize=8192)(self._pseudonym)  # bounded: ~2 MB, the people seen lately

    def key_for(self, receiver: str) -> bytes:
        return self._explicit.get(receiver) or _derive(self._master, f"pseudonym:{receiver}")

    def _pseudonym(self, receiver: str, personnummer: str) -> str:
        digest = hmac.new(self.key_for(receiver), personnummer.encode(), hashlib.sha256).hexdigest()
        return f"{receiver}:{digest[:32]}"

    def person_key(self, personnummer: str) -> str:
        """Stable internal key of a person (not a receiver pseudonym; never delivered)."""
        return hmac.new(self._person_key, personnummer.encode(), hashlib.sha256).hexdigest()[:32]
