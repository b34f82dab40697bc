"""CRC-64-AVRO (Rabin) fingerprints, as the Avro specification defines them."""

from __future__ import annotations

from typing import Final

EMPTY: Final = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE: Final = _table()


def crc64_avro(data: bytes) -> int:
    """The 64-bit Rabin fingerprint of ``data`` (an unsigned int)."""
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def fingerprint_bytes(canonical_form: str) -> bytes:
    """The 8-byte little-endian fingerprint of a parsing canonical form (as on the wire)."""
    return crc64_avro(canonical_form.encode("utf-8")).to_bytes(8, "little")
