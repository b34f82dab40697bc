"""The worker's allocator setting: freed large blocks go back to the system (the soak's memory slope)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# In a fresh process: free one 4 MiB block (glibc then raises its mmap threshold to 4 MiB, unless fixed),
# allocate 48 blocks of 1 MiB and touch them, free all but the last one (which holds the heap's top), and
# report the resident anonymous memory before and after the frees: what RocksDB's flushes did to the worker.
_PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json, sys
    from hub.worker.allocator import fix_mmap_threshold
    fixed = fix_mmap_threshold() if sys.argv[1] == "fixed" else None
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    def anon_kib():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon"):
                return int(line.split()[1])
    libc.free(libc.malloc(4 << 20))
    blocks = [libc.malloc(1 << 20) for _ in range(48)]
    for b in blocks:
        ctypes.memset(b, 1, 1 << 20)
    held = anon_kib()
    for b in blocks[:-1]:
        libc.free(b)
    print(json.dumps({"fixed": fixed, "held": held, "after": anon_kib()}))
""")


def _probe(mode: str) -> dict[str, int | bool | None]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True,
                         timeout=60)  # fmt: skip
    result: dict[str, int | bool | None] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (the worker's platform)")
def test_with_the_threshold_fixed_freed_megabyte_blocks_leave_the_process() -> None:
    default, fixed = _probe("default"), _probe("fixed")
    assert fixed["fixed"] is True
    released_default = int(default["held"] or 0) - int(default["after"] or 0)
    released_fixed = int(fixed["held"] or 0) - int(fixed["after"] or 0)
    assert released_fixed >= 40 * 1024  # the 47 freed MiB are given back ...
    assert released_default < 8 * 1024  # ... where glibc's raised threshold kept them on the heap
