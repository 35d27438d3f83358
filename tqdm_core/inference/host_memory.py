"""Keep freed host memory in the process, so large CPU tensors stop page-faulting on every call.

PyTorch's CPU allocator has no cache: every tensor is a malloc and a free. glibc serves blocks above its mmap
threshold (32 MiB at most) with fresh pages from mmap and gives them back with munmap on free, so every large
activation of every call faults in and zeroes its pages again. A 512x1024 slide of tqdm-clip-vit-b16 took 1.1 to
1.5 M page faults per call that way, about 16 % of its time on a 2-core AMD EPYC (training/bench_results).
Serving every block from the heap and never trimming the heap keeps the pages mapped for the next call; the
process then holds its peak working set, which the first call reaches anyway.

The settings are process-wide (malloc has one configuration per process) and only exist in glibc; elsewhere (musl,
macOS, Windows) the functions here do nothing. The ROS node adds its own policy on top (tqdm_ros/memory.py: fewer
arenas, freed memory handed back when the cameras pause).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

logger = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# Never trim the heap top below this much free memory (mallopt takes an int).
_TRIM_THRESHOLD_BYTES = 2**31 - 1


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse in this process: no mmap for large blocks, no heap trimming.

    Idempotent; later calls return the first call's result.

    Returns:
        True if the allocator now keeps freed memory (glibc), False where it cannot be set.
    """
    libc = glibc()
    if libc is None:
        return False
    # Both calls return 1 on success; the trim threshold first, so a failure leaves mmap as it was.
    applied = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1 and libc.mallopt(_M_MMAP_MAX, 0) == 1
    if applied:
        logger.info("glibc malloc keeps freed memory for reuse (no mmap for large blocks, no heap trimming)")
    return applied


def limit_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas (each thread that contends for the heap may get one, up to 8 per core, each keeping
    its own freed memory); call before starting threads.

    Returns:
        True when the setting was applied (glibc), False otherwise.
    """
    libc = glibc()
    return libc is not None and libc.mallopt(_M_ARENA_MAX, arenas) == 1


def release_free_memory() -> None:
    """Return the free pages of every malloc arena to the operating system (glibc)."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has mallopt and malloc_trim), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
    except OSError:
        return None
    if not (hasattr(library, "mallopt") and hasattr(library, "malloc_trim")):
        return None
    library.mallopt.argtypes, library.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return library

