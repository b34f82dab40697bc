"""The worker process's C allocator held to a fixed mmap threshold.

glibc serves an allocation above its mmap threshold (128 KiB) with its own ``mmap`` and gives it back to the
system when it is freed, but each such free *raises* the threshold to that size (up to 32 MiB): from then on
blocks of that size come from the heap, where a free leaves a hole the heap keeps. RocksDB allocates and
frees blocks of hundreds of KiB to a few MiB at every memtable flush and compaction (the dedup and consent
stores, :mod:`hub.worker.disk`), so the worker's resident memory rose in steps with each flush and never came
down: ~50-100 KB per 1,000 events in the soak benchmark, while RocksDB's own counters stayed at their caps
(bench/NOTES.md). With the threshold fixed, those blocks are mapped and unmapped again and the process stays
flat. A no-op where the C library has no ``mallopt`` (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter (malloc.h); setting it also stops the dynamic adjustment."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's own default, kept: only its rise is stopped."""


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold for this process; False where the C library cannot (nothing changed)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in this C library: the allocator's thresholds stay as they are")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
