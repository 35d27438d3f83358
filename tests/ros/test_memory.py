"""Process memory helpers: resident size, glibc allocator settings."""

import mmap

from tqdm_ros.memory import limit_allocator_caches, resident_memory_mb

MIB = 2 ** 20


def test_resident_memory_follows_touched_pages():
    """An anonymous mapping is resident once written, and gone once unmapped (no allocator in
    between that could reuse pages already resident)."""
    before = resident_memory_mb()
    block = mmap.mmap(-1, 64 * MIB)
    for offset in range(0, 64 * MIB, mmap.PAGESIZE):
        block[offset] = 1
    assert resident_memory_mb() - before > 56
    block.close()
    assert resident_memory_mb() - before < 8


def test_allocator_caches_are_limited_on_glibc():
    assert limit_allocator_caches()  # the project's platforms are glibc Linux
