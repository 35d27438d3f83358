"""Window placement for sliding-window inference (METHOD.md section 8: 512 windows, stride 341)."""
from __future__ import annotations


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows covering [0, length): regular steps, the last one flush with the end.

    512x1024 with window 512 and stride 341 gives x = 0, 341, 512 (3 windows), as the official code.
    A length at or below the window gives one window at 0 (the caller pads the image up to the window).
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    count = max(length - window + stride - 1, 0) // stride + 1
    return [max(min(i * stride, length - window), 0) for i in range(count)]
