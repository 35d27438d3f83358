"""Process memory helpers: resident size, glibc allocator settings."""

import numpy as np

from tqdm_ros.memory import limit_allocator_caches, release_free_memory, resident_memory_mb


def test_resident_memory_follows_touched_allocations():
    before = resident_memory_mb()
    block = np.ones(64 * 2 ** 20, dtype=np.uint8)  # 64 MiB, every page written
    assert resident_memory_mb() - before > 48
    del block
    release_free_memory()
    assert resident_memory_mb() - before < 16


def test_allocator_caches_are_limited_on_glibc():
    assert limit_allocator_caches()  # the project's platforms are glibc Linux
