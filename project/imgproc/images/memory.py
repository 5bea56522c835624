"""Keep freed image memory in the process: glibc malloc tuning for a worker.

A 12 MP RGB image is 48 MB, which Pillow allocates in 16 MB blocks. glibc serves blocks that big
with mmap and hands them back to the kernel on free (or trims the heap once enough is free at its
top), so the next image faults in and zero-fills every page again (thousands of page faults per
12 MP job; figures in project/README.md, "How the per-job cost was cut"). Raising the mmap
threshold to its maximum (32 MiB on 64-bit) and the trim threshold to 256 MiB keeps that memory in
the process for the next image. The price: a worker's resident memory stays near its peak.
"""

from __future__ import annotations

import ctypes
import platform

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Tune this process's allocator (and that of children forked later); False if not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this interpreter already uses
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
