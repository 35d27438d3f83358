"""Latest-frame-wins buffering between subscription callbacks and the inference worker.

One slot per camera. A callback puts the newest frame into its camera's slot, replacing (and
counting as dropped) a frame the worker has not taken yet, so memory and latency stay bounded
whatever the input rate. The worker takes every full slot at once, which is what lets it batch
frames of several cameras that arrived together.
"""

import threading
from typing import Generic, TypeVar

FrameT = TypeVar('FrameT')


class LatestFrameSlots(Generic[FrameT]):
    """Thread-safe one-slot buffer per camera with drop counting.

    Args:
        num_cameras: number of slots; cameras are addressed by index 0..num_cameras-1.
    """

    def __init__(self, *, num_cameras: int) -> None:
        if num_cameras < 1:
            raise ValueError(f'num_cameras must be at least 1, got {num_cameras}')
        self._slots: list = [None] * num_cameras
        self._dropped = [0] * num_cameras
        self._closed = False
        self._ready = threading.Condition()

    def put(self, camera_index: int, frame: FrameT) -> bool:
        """Store the newest frame of a camera.

        Returns:
            True when an older frame of that camera was still waiting and has been dropped.
        """
        with self._ready:
            replaced = self._slots[camera_index] is not None
            if replaced:
                self._dropped[camera_index] += 1
            self._slots[camera_index] = frame
            self._ready.notify()
        return replaced

    def take_ready(self, timeout: float) -> list[tuple[int, FrameT]]:
        """Wait until at least one slot is full, then empty every full slot.

        Args:
            timeout: longest wait in seconds.

        Returns:
            (camera_index, frame) pairs in camera order; empty after a timeout or once closed.
        """
        with self._ready:
            self._ready.wait_for(
                lambda: self._closed or any(f is not None for f in self._slots), timeout)
            if self._closed:
                return []
            ready = [(i, f) for i, f in enumerate(self._slots) if f is not None]
            self._slots = [None] * len(self._slots)
        return ready

    def dropped(self, camera_index: int) -> int:
        """Frames of a camera replaced before the worker took them, since creation."""
        with self._ready:
            return self._dropped[camera_index]

    def close(self) -> None:
        """Discard waiting frames and wake the worker; take_ready returns [] from now on."""
        with self._ready:
            self._closed = True
            self._slots = [None] * len(self._slots)
            self._ready.notify_all()
