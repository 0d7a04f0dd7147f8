"""The process's memory policy for streams through several threads.

glibc serves a large allocation from mmap only above a threshold that it raises each time such a
block is freed (up to 32 MiB), and each thread gets a malloc arena of its own. A backup to several
targets frees multi-megabyte buffers (upload parts and chunks) in a thread per target, so with the
dynamic threshold those buffers are soon carved from arenas that keep the memory after ``free``:
the peak RSS then grows by a few buffers per target. A fixed threshold sends every large buffer
back to the system as soon as it is freed (measured by ``make bench``'s three-target run)."""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)
LARGE = 256 * 1024


def release_large_buffers(threshold: int = LARGE) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
