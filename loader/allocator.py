"""glibc's allocator held to a bounded footprint, before the loader starts any thread.

The export streams each file through buffers of a few MiB (COPY blocks of 1 MiB, S3 parts,
SFTP writes). glibc serves a request of 128 KiB or more by mmap and gives it back on free, but
it raises that threshold to the size of each such buffer freed (up to 32 MiB), after which the
buffers come from the heap arenas, one arena per thread (up to eight per core), where freed
space is kept rather than returned: the process's peak memory then grows with the largest
file. A fixed threshold of 1 MiB keeps the big buffers on mmap (returned on free) and two
arenas bound what the threads keep between them. docs/benchmarks.md measures it.

Elsewhere (macOS, Windows, musl) nothing is changed, nor with MIPS_ALLOCATOR_BOUND=off (glibc's
own behaviour, and its MALLOC_* variables, for comparison: the benchmark's lever).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt(3) parameters (glibc's malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1 << 20
ARENAS = 2
SWITCH = "MIPS_ALLOCATOR_BOUND"  # "off": leave glibc as it is


def bound_footprint() -> bool:
    """Set the fixed mmap threshold and the arena bound; True when glibc took both."""
    if not sys.platform.startswith("linux") or os.environ.get(SWITCH, "on") == "off":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # glibc only: musl has mallopt as a stub, and no gnu_get_libc_version
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return False
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    threshold = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    arenas = libc.mallopt(M_ARENA_MAX, ARENAS)
    return threshold == 1 and arenas == 1
