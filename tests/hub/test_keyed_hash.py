"""The person key is an HMAC-SHA256 computed from pre-hashed key blocks on the hot path: it must equal the
standard library's HMAC, or every person key (message keys, consent state, dedup) would change."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hub.pseudonym import KeyedHash


@settings(max_examples=300, derandomize=True, deadline=None)
@given(key=st.binary(max_size=200), message=st.binary(max_size=100))
@example(key=b"", message=b"")
@example(key=b"k" * 64, message=b"199001011234")  # exactly one block
@example(key=b"k" * 65, message=b"199001011234")  # longer than a block: hashed first
def test_keyed_hash_is_hmac_sha256(key: bytes, message: bytes) -> None:
    keyed = KeyedHash(key)
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    assert keyed.hexdigest(message) == expected
    assert keyed.hexdigest(message) == expected  # the pre-hashed blocks are not consumed by a use
