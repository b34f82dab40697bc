"""Sealing the audit trail with keys that never are in Kafka: a keyed MAC on every record, signed checkpoints.

The hash chain of :mod:`hub.audit` shows an edit, a deletion or a reordering, but anyone who can write to
the topic can rewrite a whole partition with recomputed hashes. Two keys close that:

- the **MAC key** (``HUB_AUDIT__MAC_KEY``): every record carries ``mac`` = HMAC-SHA256 of its ``hash``.
  Without the key a rewritten record cannot get a valid MAC;
- the **signing key** (``HUB_AUDIT__SIGNING_KEY``, Ed25519): at least every ``HUB_AUDIT__CHECKPOINT_EVERY``
  records or ``HUB_AUDIT__CHECKPOINT_SECONDS`` seconds the worker writes an :class:`AuditCheckpoint`
  (partition, last sequence number, chain head, time, signature) to the audit topic and, once the batch
  committed, to the anchor store outside the cluster (:mod:`hub.audit_anchor`). An auditor checks the
  signatures with the public key alone (``HUB_AUDIT__VERIFY_KEY``).

When a key is not set it is derived from ``HUB_SECRET_KEY`` (purposes ``audit-mac``, ``audit-signing``), as
the pseudonym keys are; ``hub audit keygen`` makes separate random ones, which a production worker should
have (then a leaked gateway secret does not let anyone forge the trail).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from hub.contract.outputs import AuditCheckpoint
from hub.pseudonym import KeyedHash, derive_key
from hub.settings import HubSettings


def _key_bytes(text: str) -> bytes:
    """A key as ``hub audit keygen`` writes it (URL-safe base64 of 32 bytes), else the text's own bytes."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return text.encode()
    return raw if len(raw) == 32 else text.encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw public key: which key signed a checkpoint."""
    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


@dataclass(frozen=True)
class Sealer:
    """The keys of one hub's audit trail: what the worker seals with and what ``hub audit verify`` checks."""

    mac: KeyedHash | None
    """None: MACs are not checked (a verifier given only the public key)."""
    signing: Ed25519PrivateKey | None
    public: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def record_mac(self, record_hash: str) -> str | None:
        return None if self.mac is None else self.mac.hexdigest(record_hash.encode())

    def mac_ok(self, record_hash: str, mac: str | None) -> bool:
        expected = self.record_mac(record_hash)
        return expected is not None and mac is not None and hmac.compare_digest(expected, mac)

    def checkpoint(self, partition: int, seq: int, head: str, at: datetime) -> dict[str, Any]:
        """A signed checkpoint as the plain data the Avro schema takes."""
        if self.signing is None:
            raise RuntimeError("this sealer has no signing key")
        kid = self.key_id
        signature = self.signing.sign(signed_bytes(partition, seq, head, _ms(at), kid)).hex()
        return {"partition": partition, "seq": seq, "head": head, "at": at, "key_id": kid, "signature": signature}

    def signature_ok(self, cp: AuditCheckpoint | dict[str, Any]) -> bool:
        c = cp if isinstance(cp, dict) else cp.model_dump()
        at = c["at"] if isinstance(c["at"], int) else _ms(c["at"])
        try:
            self.public.verify(bytes.fromhex(c["signature"]), signed_bytes(c["partition"], c["seq"], c["head"], at,
                                                                          c["key_id"]))  # fmt: skip
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True


def signed_bytes(partition: int, seq: int, head: str, at_ms: int, kid: str) -> bytes:
    """What a checkpoint's signature covers: its fields as canonical JSON (keys sorted, no spaces)."""
    return orjson.dumps({"partition": partition, "seq": seq, "head": head, "at": at_ms, "key_id": kid},
                        option=orjson.OPT_SORT_KEYS)  # fmt: skip


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def sealer_from(settings: HubSettings) -> Sealer:
    """The trail's keys from the settings (derived from ``HUB_SECRET_KEY`` where not set)."""
    a = settings.audit
    master = settings.secret_key.get_secret_value().encode()
    mac_key = _key_bytes(a.mac_key.get_secret_value()) if a.mac_key else derive_key(master, "audit-mac")
    seed = _key_bytes(a.signing_key.get_secret_value()) if a.signing_key else derive_key(master, "audit-signing")
    signing = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest() if len(seed) != 32 else seed)
    public = signing.public_key()
    if a.verify_key:
        given = Ed25519PublicKey.from_public_bytes(_key_bytes(a.verify_key))
        if key_id(given) != key_id(public):
            raise ValueError("HUB_AUDIT__VERIFY_KEY is not the public key of HUB_AUDIT__SIGNING_KEY")
    return Sealer(KeyedHash(mac_key), signing, public)


def keygen() -> dict[str, str]:
    """New random keys as the settings take them: the MAC key, the signing key and its public key."""
    signing = Ed25519PrivateKey.generate()
    raw = signing.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"HUB_AUDIT__MAC_KEY": _b64(secrets.token_bytes(32)), "HUB_AUDIT__SIGNING_KEY": _b64(raw),
            "HUB_AUDIT__VERIFY_KEY": _b64(public)}  # fmt: skip
