"""Frames a camera published that never reached the node's callback.

The one-slot buffer counts the frames it replaces, but frames can also be lost before the
callback runs: the subscription's history (``input_qos_depth`` frames) overwrites the oldest
frame when the executor falls behind, and best-effort transport may not deliver a frame at all.
No DDS status reports history overwrites, so losses are counted from the publisher's sequence
numbers, which rmw gives with every message (``MessageInfo['publication_sequence_number']``,
one counter per publisher): a jump from 7 to 10 means frames 8 and 9 were lost.

Losses before the first frame of a publisher (published before the subscription matched) and
after its last received frame cannot be seen this way.
"""

from collections import OrderedDict
from typing import Optional

# rmw's value for "this middleware does not provide sequence numbers" (RMW_MESSAGE_INFO_
# SEQUENCE_NUMBER_UNSUPPORTED, the largest uint64); rclpy may also give None.
SEQUENCE_UNSUPPORTED = 2 ** 64 - 1
# Publishers remembered per camera; the least recently heard one is forgotten beyond this.
MAX_PUBLISHERS = 64


class PublisherSequenceTracker:
    """Counts gaps in the sequence numbers of each publisher of one topic.

    Not thread-safe: one tracker per camera, fed by that camera's subscription callback (a
    callback of a subscription never runs concurrently with itself in rclpy executors).
    """

    def __init__(self) -> None:
        self._last: OrderedDict[bytes, int] = OrderedDict()

    def observe(self, publisher_gid: bytes, sequence: Optional[int]) -> int:
        """Record a received message; return how many of its publisher's messages were lost.

        Args:
            publisher_gid: identity of the publisher (``MessageInfo['publisher_gid']['data']``).
            sequence: the publisher's sequence number of this message (1, 2, ...), None or
                :data:`SEQUENCE_UNSUPPORTED` where the middleware has none.

        Returns:
            Messages of that publisher between its previous received message and this one
            (0 for its first message, an unsupported sequence, or a publisher that restarted
            its numbering).
        """
        if sequence is None or sequence == SEQUENCE_UNSUPPORTED:
            return 0
        previous = self._last.pop(publisher_gid, None)
        self._last[publisher_gid] = sequence
        if len(self._last) > MAX_PUBLISHERS:
            self._last.popitem(last=False)
        if previous is None or sequence <= previous:
            return 0
        return sequence - previous - 1
