"""Keep freed memory in the process for meta-training (glibc's malloc only).

Why: glibc gives every block of 128 KiB or more its own mapping from the kernel and returns the
top of the heap once more than twice that is free, so a freshly allocated tensor of that size
starts as untouched pages that fault in one by one. A meta-step allocates and frees the same
~10 MB of batched tensors every time: on the demo shapes those faults cost 30-40% of the
closed-form meta-gradient (benchmarks/meta_train.py). Raising both thresholds once lets freed
blocks be reused instead. It is process-wide and cannot be undone, so only meta-training turns it
on; an explicit MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in the environment wins.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_state = {"done": False}


def glibc() -> ctypes.CDLL | None:
    """The running process's C library if it is glibc (whose mallopt works; musl's is a stub), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Serve blocks below `mmap_threshold` from the heap and keep up to `trim_threshold` of free heap
    top. True when the settings are in force (now or from an earlier call); False where the C library
    is not glibc, or the user set the thresholds in the environment."""
    if _state["done"]:
        return True
    libc = glibc()
    if libc is None or any(k in os.environ for k in _ENV):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _state["done"] = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    return _state["done"]
