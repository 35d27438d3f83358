"""Latest-frame-wins slots: replacement, drop counting, batching across cameras, wake-up."""

import threading
import time

import pytest

from tqdm_ros.frame_buffer import LatestFrameSlots


def test_newest_frame_replaces_a_waiting_one_and_counts_a_drop():
    slots = LatestFrameSlots(num_cameras=2)
    assert slots.put(0, 'a1') is False
    assert slots.put(0, 'a2') is True
    assert slots.put(0, 'a3') is True
    assert (slots.dropped(0), slots.dropped(1)) == (2, 0)
    assert slots.take_ready(timeout=0.0) == [(0, 'a3')]


def test_take_ready_returns_every_camera_with_a_frame_then_empties_the_slots():
    slots = LatestFrameSlots(num_cameras=3)
    slots.put(2, 'c')
    slots.put(0, 'a')
    assert slots.take_ready(timeout=0.0) == [(0, 'a'), (2, 'c')]
    assert slots.take_ready(timeout=0.01) == []
    assert slots.put(0, 'a2') is False  # a taken frame is not a drop


def test_take_ready_waits_for_a_frame_and_close_wakes_it():
    slots = LatestFrameSlots(num_cameras=1)
    taken = []
    worker = threading.Thread(target=lambda: taken.append(slots.take_ready(timeout=10.0)))
    worker.start()
    time.sleep(0.05)
    slots.put(0, 'frame')
    worker.join(5.0)
    assert taken == [[(0, 'frame')]]

    worker = threading.Thread(target=lambda: taken.append(slots.take_ready(timeout=10.0)))
    started = time.monotonic()
    worker.start()
    slots.close()
    worker.join(5.0)
    assert taken[-1] == [] and time.monotonic() - started < 5.0
    slots.put(0, 'late')
    assert slots.take_ready(timeout=0.0) == []


def test_every_frame_is_either_taken_or_counted_as_dropped_under_contention():
    """A producer outpaces a slow consumer: taken + dropped == produced, newest always wins."""
    slots = LatestFrameSlots(num_cameras=1)
    produced = 2000
    taken = []

    def consume():
        while True:
            ready = slots.take_ready(timeout=1.0)
            if not ready:
                return
            taken.extend(frame for _, frame in ready)
            time.sleep(0.001)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for frame in range(produced):
        slots.put(0, frame)
    consumer.join(10.0)
    assert len(taken) + slots.dropped(0) == produced
    assert taken == sorted(taken) and taken[-1] == produced - 1
    assert slots.dropped(0) > 0


def test_needs_a_camera():
    with pytest.raises(ValueError, match='num_cameras'):
        LatestFrameSlots(num_cameras=0)
