"""Secrets fail closed: outside ``HUB_ENV=dev`` a service does not start with a secret anyone could know.

A secret is refused when it is a built-in development default, still holds a ``CHANGE-ME`` placeholder of
the per-service env files in ``deploy/env/``, or is shorter than 32 bytes. The check names the
setting (never its value) in one line, and the service exits non-zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from hub.settings import DEV_SECRET, HubSettings

MIN_SECRET_BYTES = 32
PLACEHOLDER = "CHANGE-ME"

#: The secrets each service uses; a service checks only its own.
SERVICE_SECRETS: dict[str, tuple[str, ...]] = {
    "worker": ("HUB_SECRET_KEY", "HUB_PSEUDONYM_KEYS", "HUB_KAFKA__PASSWORD", "HUB_AUDIT__MAC_KEY",
               "HUB_AUDIT__SIGNING_KEY"),
    "ingest": ("HUB_SECRET_KEY", "HUB_PSEUDONYM_KEYS", "HUB_KAFKA__PASSWORD"),
    "web": ("HUB_WEB__SESSION_SECRET", "HUB_KAFKA__PASSWORD"),
    # A connector keys events about a person with the person key derived from HUB_SECRET_KEY, which must be
    # the worker's (events and consent about one person meet on one partition).
    "connector": ("HUB_SECRET_KEY", "HUB_KAFKA__PASSWORD"),
    # The police open feed carries no person: only its Kafka credentials.
    "polisen-feed": ("HUB_KAFKA__PASSWORD",),
}


class WeakSecretError(RuntimeError):
    """A service was asked to start with a weak secret outside development mode."""


@dataclass(frozen=True)
class Weakness:
    setting: str
    why: str

    def __str__(self) -> str:
        return f"{self.setting} {self.why}"


def weakness(value: str) -> str | None:
    """Why ``value`` is not a production secret, or None."""
    if value == DEV_SECRET:
        return "is the built-in development default"
    if PLACEHOLDER.lower() in value.lower():
        return f"still holds the {PLACEHOLDER} placeholder"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    return None


def _values(settings: HubSettings, name: str) -> Iterable[tuple[str, SecretStr | None]]:
    if name == "HUB_SECRET_KEY":
        yield name, settings.secret_key
    elif name == "HUB_WEB__SESSION_SECRET":
        yield name, settings.web.session_secret
    elif name == "HUB_PSEUDONYM_KEYS":
        for receiver, key in sorted(settings.pseudonym_keys.items()):
            yield f"HUB_PSEUDONYM_KEYS[{receiver}]", key
    elif name == "HUB_AUDIT__MAC_KEY":  # optional (derived from HUB_SECRET_KEY when unset); checked when set
        yield name, settings.audit.mac_key
    elif name == "HUB_AUDIT__SIGNING_KEY":
        yield name, settings.audit.signing_key
    elif name == "HUB_KAFKA__PASSWORD":
        yield name, settings.kafka.password
        path = settings.kafka.password_file
        if path is not None and settings.kafka.password is None:
            # A missing file is reported by the client factory, naming the principal.
            with contextlib.suppress(OSError):
                yield "HUB_KAFKA__PASSWORD_FILE", SecretStr(path.read_text().strip())


def weaknesses(settings: HubSettings, service: str) -> list[Weakness]:
    """Every weak secret of ``service`` (whatever the mode)."""
    found: list[Weakness] = []
    for name in SERVICE_SECRETS[service]:
        for setting, secret in _values(settings, name):
            if secret is None:
                continue
            why = weakness(secret.get_secret_value())
            if why:
                found.append(Weakness(setting, why))
    return found


def require_strong_secrets(settings: HubSettings, service: str) -> None:
    """Raise :class:`WeakSecretError` naming the first weak setting, unless ``HUB_ENV=dev``."""
    if settings.env == "dev":
        return
    found = weaknesses(settings, service)
    if found:
        raise WeakSecretError(f"refusing to start {service}: {found[0]} (set a random secret of at least "
                              f"{MIN_SECRET_BYTES} bytes; HUB_ENV=dev allows development defaults)")
