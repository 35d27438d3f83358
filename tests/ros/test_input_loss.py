"""Frames lost before the callback, from the publishers' sequence numbers."""

from tqdm_ros.input_loss import MAX_PUBLISHERS, PublisherSequenceTracker, SEQUENCE_UNSUPPORTED


def test_gaps_of_each_publisher_are_counted_on_their_own():
    """Publisher a: 1, 2, 5 (3 and 4 lost); publisher b: 10, 11, 14 (12 and 13 lost)."""
    tracker = PublisherSequenceTracker()
    observed = [tracker.observe(gid, sequence) for gid, sequence in (
        (b'a', 1), (b'b', 10), (b'a', 2), (b'b', 11), (b'a', 5), (b'b', 14))]
    assert observed == [0, 0, 0, 0, 2, 2]


def test_first_messages_restarts_and_unsupported_sequences_count_nothing():
    tracker = PublisherSequenceTracker()
    assert tracker.observe(b'a', 50) == 0  # what came before the first one is unknown
    assert tracker.observe(b'a', 3) == 0  # the publisher restarted its numbering
    assert tracker.observe(b'a', 4) == 0
    assert tracker.observe(b'b', None) == 0
    assert tracker.observe(b'b', SEQUENCE_UNSUPPORTED) == 0


def test_the_least_recently_heard_publisher_is_forgotten():
    tracker = PublisherSequenceTracker()
    for index in range(MAX_PUBLISHERS + 1):
        tracker.observe(bytes([index]), 1)
    assert tracker.observe(bytes([0]), 5) == 0  # forgotten: its next message is a first one
    assert tracker.observe(bytes([MAX_PUBLISHERS]), 5) == 3
