"""Tests of BagPlayer: recorded bytes on the recorded schedule, and every playback option.

Rate factor, topic selection, remapping, start offset, latched class table, /clock, loop, errors.
"""
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import String

from tests.ros.bag.conftest import START_NS
from tqdm_ros.bag.bag_reader import BagError, connections_for, open_bag
from tqdm_ros.bag.replay import BagPlayer, parse_remap, ReplayConfig

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Listener:
    """Subscribes on its own node and spins it in a thread; keeps (publication time in s, message).

    The publication time is the DDS source timestamp the player's writer stamped: the schedule the player
    kept, unaffected by how late this process's executor gets to the message on a loaded machine."""

    def __init__(self, context, subscriptions, *, raw_topics=()):
        self.node = rclpy.create_node('bag_test_listener', context=context)
        self.received = {topic: [] for topic, _, _ in subscriptions}
        for topic, msg_type, qos in subscriptions:
            self.node.create_subscription(
                msg_type, topic,
                lambda msg, info, t=topic: self.received[t].append((info['source_timestamp'] / 1e9, msg)),
                qos,
                raw=topic in raw_topics)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait_for(self, topic, count, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        while len(self.received[topic]) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.received[topic]

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=2.0)
        self.node.destroy_node()


def _recorded(bag, topic):
    with open_bag(bag) as reader:
        return [bytes(raw) for _, _, raw in reader.messages(connections_for(reader, [topic]))]


@pytest.mark.parametrize('rate', [1.0, 2.0])
def test_replay_keeps_bytes_and_schedule(make_test_bag, ros_context, rate):
    bag = make_test_bag(num_frames=8, rate_hz=10.0)
    listener = Listener(ros_context, [('/camera/image_raw', Image, 10), ('/clock', Clock, 10)],
                        raw_topics=('/camera/image_raw',))
    player = BagPlayer(bag, config=ReplayConfig(rate=rate, wait_for_subscribers_s=5.0,
                                                topics=('/camera/image_raw',)),
                       context=ros_context)
    try:
        summary = player.play()
        received = listener.wait_for('/camera/image_raw', 8)
    finally:
        player.close()
        listener.close()
    assert summary.messages == {'/camera/image_raw': 8} and not summary.stopped
    assert [raw for _, raw in received] == _recorded(bag, '/camera/image_raw')
    # Recorded 100 ms apart; at rate r they must be published 100 / r ms apart. The median gap is
    # robust to one late wake-up of the player on a loaded 2-core machine, the 20 % band to scheduler noise.
    gaps_ms = np.diff([published for published, _ in received]) * 1e3
    assert np.median(gaps_ms) == pytest.approx(100.0 / rate, rel=0.2)
    assert summary.wall_s == pytest.approx(0.7 / rate, rel=0.5)
    # /clock carries bag time from the first frame on, never going back.
    clock_ns = [m.clock.sec * 10**9 + m.clock.nanosec for _, m in listener.received['/clock']]
    assert clock_ns and clock_ns == sorted(clock_ns)
    assert START_NS <= clock_ns[0] and clock_ns[-1] <= START_NS + 700_000_000 + 10**7


def test_selection_remap_offset_and_latched_class_table(make_test_bag, ros_context):
    bag = make_test_bag(num_frames=6, rate_hz=20.0)
    config = ReplayConfig(rate=4.0, start_offset_s=0.12, clock_hz=0.0,
                          topics=('/camera/image_raw', '/camera/ground_truth/class_table'),
                          remap=parse_remap(['/camera/image_raw:=/cam0/image']),
                          wait_for_subscribers_s=5.0)
    listener = Listener(ros_context, [('/cam0/image', Image, 10),
                                      ('/camera/ground_truth', Image, 10)])
    player = BagPlayer(bag, config=config, context=ros_context)
    try:
        assert player.output_topics['/camera/image_raw'] == '/cam0/image'
        summary = player.play()
        images = listener.wait_for('/cam0/image', 3)
        # The class table was logged at the bag start, before the offset: still latched.
        late = Listener(ros_context, [('/camera/ground_truth/class_table', String, LATCHED)])
        tables = [m for _, m in late.wait_for('/camera/ground_truth/class_table', 1)]
        late.close()
    finally:
        player.close()
        listener.close()
    # Frames at 0, 50, ... 250 ms logged 3 ms later: from 120 ms on, frames 3, 4, 5 remain.
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in images]
    assert stamps == [START_NS + k * 50_000_000 for k in (3, 4, 5)]
    assert summary.messages == {'/cam0/image': 3, '/camera/ground_truth/class_table': 0}
    assert listener.received['/camera/ground_truth'] == []
    assert tables and '"camvid11"' in tables[0].data


def test_loop_plays_again_until_stopped(make_test_bag, ros_context):
    bag = make_test_bag(num_frames=2, rate_hz=20.0)
    player = BagPlayer(bag, config=ReplayConfig(rate=4.0, loop=True, clock_hz=0.0),
                       context=ros_context)
    timer = threading.Timer(0.5, player.stop)
    timer.start()
    try:
        summary = player.play()
    finally:
        timer.cancel()
        player.close()
    # One pass is about 13 ms of bag time at rate 4: many passes in 0.5 s, then a clean stop.
    assert summary.stopped and summary.loops >= 3
    assert summary.messages['/camera/image_raw'] >= 2 * summary.loops


def test_bad_replay_requests_are_refused_before_publishing(make_test_bag, ros_context, tmp_path):
    bag = make_test_bag()
    with pytest.raises(BagError, match='no topic /nope; its topics are'):
        BagPlayer(bag, config=ReplayConfig(topics=('/nope',)), context=ros_context)
    with pytest.raises(BagError, match='cannot remap /other: not among the played topics'):
        BagPlayer(bag, config=ReplayConfig(remap=(('/other', '/x'),)), context=ros_context)
    with pytest.raises(BagError, match='past the end of the bag'):
        BagPlayer(bag, config=ReplayConfig(start_offset_s=5.0), context=ros_context)
    with pytest.raises(FileNotFoundError):
        BagPlayer(tmp_path / 'missing', context=ros_context)
    with pytest.raises(ValueError, match='not of the form'):
        parse_remap(['/a=/b'])
    with pytest.raises(ValueError, match='rate must be > 0'):
        ReplayConfig(rate=0.0)
