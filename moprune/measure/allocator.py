"""A steady CPU allocator for timing: glibc's malloc thresholds fixed once per process.

glibc serves blocks above its mmap threshold (128 KiB at first) with a fresh ``mmap`` and returns them with
``munmap`` when freed, so such a block's pages are faulted in again on every pass; and it raises that threshold by
itself as large blocks are freed (up to 32 MiB). Which activations of a forward pass cost page faults therefore
depends on what the process allocated before. Measured here (ResNet-8 bench task, one plan against dense, same
settings): 1.42x in one process, 1.74-1.82x in others and after a few proxy fine-tunes in the first, the dense
model reading 9 ms or 12-21 ms; with both thresholds fixed, 1.40-1.45x in every process and state, dense 9.0-9.7 ms.
Fixing them (mmap threshold 32 MiB, glibc's largest; trim threshold 1 GiB) keeps freed blocks for reuse, as a warm
server's allocator does, at the cost of a process that holds its peak memory until it exits.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from typing import Any

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc refuses more on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_done: str | None = None


def steady_cpu_allocator(libc: Any = None) -> str:
    """Fix glibc malloc's mmap and trim thresholds for this process (once); returns what was done, for the log.

    Left as it is when the allocator is not glibc's (musl, macOS, Windows, or jemalloc/tcmalloc preloaded, whose
    ``mallopt`` is absent or a no-op) or when the environment already sets glibc's malloc tunables.
    """
    global _done
    if _done is not None and libc is None:
        return _done
    if any(os.environ.get(k) for k in _ENV) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        state = "glibc malloc tunables set by the environment: left as they are"
    elif libc is None and platform.libc_ver()[0] != "glibc":
        state = "not glibc's malloc: left as it is"
    else:
        lib = libc if libc is not None else ctypes.CDLL(None)
        ok = lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and lib.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        state = ("glibc malloc: mmap threshold fixed at 32 MiB, trim threshold 1 GiB (large blocks reused, not "
                 "mapped and faulted in again every pass)" if ok else "glibc malloc refused mallopt: left as it is")
    if libc is None:
        _done = state
        log.info("CPU timing: %s", state)
    return state
