"""Keep freed host memory in the process, so inference does not page-fault it back in on every call.

A forward pass allocates and frees one activation per layer, several MB each (FSRCNN x4 on a
120×80 input: 56×120×80 floats = 2.1 MB). glibc gives such blocks back to the kernel: those above
its mmap threshold are unmapped on free, and the top of the heap is trimmed once more than the trim
threshold lies free there. The next layer's block is then faulted in again, one 4 KiB page at a
time. On the 2-core VM this project runs CPU work on, that was 1,200-1,800 minor faults per
forward and 35-40% of the time of FSRCNN/ESPCN x4 on a 120×80 input (14.6 → 9.1 ms and
12.7 → 8.1 ms, one thread; whole-image `bench models` runs in bench/results/README.md).

`retain_freed_memory` fixes both thresholds (setting them also turns off glibc's own adaptive
threshold): blocks under 32 MiB come from the heap, and up to 256 MiB of free heap top is kept. The
process keeps its high-water mark of such blocks instead of returning it; blocks of 32 MiB and more
still come straight from the kernel, as before. It changes nothing where the C library is not glibc,
or where the user set glibc's malloc variables (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
`MALLOC_TOP_PAD_`, `GLIBC_TUNABLES`): their settings win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's ceiling for this parameter on 64-bit
TRIM_THRESHOLD_BYTES = 256 << 20
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


@functools.cache
def retain_freed_memory() -> bool:
    """Set glibc's malloc thresholds once per process (see the module doc); True if they were set."""
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    log.debug("malloc thresholds %s", "set" if done else "not accepted")
    return done
