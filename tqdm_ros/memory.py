"""Resident memory of the node process: what it is, and the allocator caches it need not keep.

glibc's malloc gives each thread that contends for the heap its own arena (up to 8 per core)
and keeps freed memory in them. The node has executor threads, an inference worker and
PyTorch's threads, and model loading frees a whole checkpoint (the fp16 file next to the fp32
weights): without limits that freed memory stays resident. :func:`limit_allocator_caches` caps
the arenas before any thread starts; :func:`release_free_memory` hands freed heap pages back to
the system after model loading, the first inference and model release (the Predictor's
``reuse_memory`` keeps freed memory between frames; an explicit release still hands it back).
On a C library other than glibc both do nothing.
"""

import os

from tqdm_core.inference.host_memory import limit_arenas, release_free_memory  # noqa: F401 (node API)

# Arenas for the whole process: the main thread's plus one shared by the other threads.
ARENA_MAX = 2


def limit_allocator_caches() -> bool:
    """Cap glibc's malloc arenas at :data:`ARENA_MAX`; call before starting threads.

    Returns:
        True when the setting was applied (glibc), False otherwise.
    """
    return limit_arenas(ARENA_MAX)


def resident_memory_mb() -> float:
    """Resident set size of this process in MiB (Linux ``/proc``; 0.0 where unavailable)."""
    try:
        with open('/proc/self/statm') as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return resident_pages * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
