"""The contract's errors: one error type for bad input, one for a broken schema folder."""

from __future__ import annotations

from typing import Final

#: The deadletter ``ReasonCode`` symbols a :class:`ContractError` may carry (a subset of
#: ``se.samverkan.hub.ReasonCode``; routing reasons are the hub's, not the contract's).
CONTRACT_REASONS: Final = frozenset(
    {"undecodable", "unknown_fingerprint", "truncated", "invalid_payload", "unknown_event_type"}
)


class ContractError(Exception):
    """Input that does not meet the contract.

    ``reason`` is a deadletter ``ReasonCode`` symbol, ``message`` says what and where, ``path`` is the
    field path (``payload.participants``) when one field is at fault. Messages never contain a
    personnummer or any other input value that could identify a person.
    """

    def __init__(self, reason: str, message: str, path: str | None = None) -> None:
        if reason not in CONTRACT_REASONS:
            raise ValueError(f"unknown contract error reason {reason!r}")
        self.reason = reason
        self.message = message
        self.path = path
        super().__init__(f"{reason}: {message}")

    def __repr__(self) -> str:
        return f"ContractError(reason={self.reason!r}, message={self.message!r}, path={self.path!r})"


class SchemaError(Exception):
    """A schema file that cannot be loaded, parsed or resolved (a bug in the contract, not in input)."""
