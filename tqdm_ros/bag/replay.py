"""Play a rosbag2 bag into ROS like ``ros2 bag play``, with rclpy only.

The recorded CDR bytes are published unchanged (``Publisher.publish(bytes)``), so headers, stamps
and payloads reach subscribers exactly as recorded. Each message leaves at its log time relative to
the first one, divided by the rate factor, on an absolute schedule: a late message does not delay
the ones after it. ``/clock`` carries the bag time for nodes with ``use_sim_time``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import pathlib
import threading
import time

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Connection, QosReliability
from rosgraph_msgs.msg import Clock
from tqdm import tqdm

from tqdm_ros.bag.bag_reader import BagError, connections_for, is_latched, iter_messages
from tqdm_ros.bag.bag_reader import message_class, open_bag

CLOCK_TOPIC = '/clock'


@dataclass(frozen=True)
class ReplayConfig:
    """How to play a bag.

    Attributes:
        rate: playback speed factor; 2.0 plays twice as fast as recorded.
        loop: start again from the start point after the last message, until stopped.
        start_offset_s: skip this many seconds from the start of the bag; latched topics still
            deliver their last message before that point.
        topics: play only these topics; empty plays all.
        remap: (recorded topic, published topic) pairs.
        clock_hz: rate of ``/clock`` messages with the bag time; 0 publishes no ``/clock``.
        wait_for_subscribers_s: before playing, wait up to this long until every non-latched
            topic has a subscriber (so a node under test sees the first frame); 0 does not wait.
        queue_depth: history depth of the non-latched publishers.
    """

    rate: float = 1.0
    loop: bool = False
    start_offset_s: float = 0.0
    topics: tuple[str, ...] = ()
    remap: tuple[tuple[str, str], ...] = ()
    clock_hz: float = 40.0
    wait_for_subscribers_s: float = 0.0
    queue_depth: int = 10

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f'rate must be > 0, got {self.rate}')
        if self.start_offset_s < 0 or self.clock_hz < 0 or self.wait_for_subscribers_s < 0:
            raise ValueError('start_offset_s, clock_hz and wait_for_subscribers_s must be >= 0')
        if self.queue_depth < 1:
            raise ValueError(f'queue_depth must be >= 1, got {self.queue_depth}')


@dataclass(frozen=True)
class ReplaySummary:
    """What a playback did.

    Attributes:
        messages: messages published per (published) topic name.
        loops: complete passes over the bag.
        wall_s: wall time spent playing.
        bag_span_s: bag time covered by one pass, from the start point to the last message.
        lateness_ms: (N,) float64, how late each message left against its schedule.
        stopped: playback was stopped before it finished.
        unmatched_topics: non-latched topics that had no subscriber when playback began (only
            checked when waiting for subscribers).
    """

    messages: dict[str, int]
    loops: int
    wall_s: float
    bag_span_s: float
    lateness_ms: np.ndarray = field(repr=False)
    stopped: bool
    unmatched_topics: tuple[str, ...] = ()


def parse_remap(items: list[str]) -> tuple[tuple[str, str], ...]:
    """Parse ``from:=to`` strings, as ``ros2 bag play --remap`` takes them."""
    pairs = []
    for item in items:
        source, sep, target = item.partition(':=')
        if not sep or not source or not target:
            raise ValueError(f"remap '{item}' is not of the form /recorded/topic:=/new/topic")
        pairs.append((source, target))
    return tuple(pairs)


def publisher_qos(connection: Connection, *, depth: int) -> QoSProfile:
    """Choose the QoS to publish a recorded topic with, from what its publishers offered.

    Reliable unless some recorded publisher was best effort (a reliable publisher also serves
    best-effort subscribers); transient-local when every recorded publisher was, so latched
    topics such as the class table reach late subscribers.
    """
    profiles = getattr(connection.ext, 'offered_qos_profiles', [])
    best_effort = any(p.reliability == QosReliability.BEST_EFFORT for p in profiles)
    latched = is_latched(connection)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max([p.depth for p in profiles] + [1]) if latched else depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class BagPlayer:
    """Publishes the messages of a bag on their recorded schedule.

    Construction opens the bag, checks the chosen topics and creates the publishers, so bad input
    fails before anything is published. `play` blocks; `stop` may be called from another thread
    or a signal handler.
    """

    def __init__(self, bag: str | pathlib.Path, *, config: ReplayConfig = ReplayConfig(),
                 context: Context | None = None, node_name: str = 'tqdm_bag_player') -> None:
        self._bag = pathlib.Path(bag)
        self._config = config
        self._stop = threading.Event()
        with open_bag(self._bag) as reader:
            connections = (connections_for(reader, config.topics) if config.topics
                           else list(reader.connections))
            self._start_ns = reader.start_time + int(round(config.start_offset_s * 1e9))
            self._end_ns = reader.end_time - 1
            self._total = sum(c.msgcount for c in connections)
        if not connections:
            raise BagError(f"bag '{self._bag}' holds no topic to play")
        if self._start_ns > self._end_ns:
            raise BagError(f'start offset {config.start_offset_s} s is past the end of the bag '
                           f'({(self._end_ns - self._start_ns) * 1e-9 + config.start_offset_s:.3f}'
                           ' s long)')
        types: dict[str, set[str]] = {}
        for connection in connections:
            types.setdefault(connection.topic, set()).add(connection.msgtype)
        mixed = sorted(t for t, names in types.items() if len(names) > 1)
        if mixed:
            raise BagError(f"topic {mixed[0]} of bag '{self._bag}' holds several message types "
                           f'({", ".join(sorted(types[mixed[0]]))}); leave it out with --topics')
        remap = dict(config.remap)
        recorded = set(types)
        unknown = sorted(set(remap) - recorded)
        if unknown:
            raise BagError(f"cannot remap {', '.join(unknown)}: not among the played topics "
                           f"{', '.join(sorted(recorded))}")
        self._node = rclpy.create_node(node_name, context=context)
        self._publishers: dict[str, object] = {}
        self._latched: set[str] = set()
        self._output_topic: dict[str, str] = {}
        for connection in connections:
            topic = connection.topic
            if topic in self._publishers:
                continue
            self._output_topic[topic] = remap.get(topic, topic)
            self._publishers[topic] = self._node.create_publisher(
                message_class(connection.msgtype), self._output_topic[topic],
                publisher_qos(connection, depth=config.queue_depth))
            if is_latched(connection):
                self._latched.add(topic)
        self._clock = (self._node.create_publisher(Clock, CLOCK_TOPIC, 10)
                       if config.clock_hz > 0 else None)
        self._next_clock = 0.0  # monotonic time of the next /clock tick

    @property
    def node(self):
        """The rclpy node that owns the publishers."""
        return self._node

    @property
    def output_topics(self) -> dict[str, str]:
        """Recorded topic name -> published topic name."""
        return dict(self._output_topic)

    def stop(self) -> None:
        """Ask `play` to return after the current message (thread and signal safe)."""
        self._stop.set()

    def close(self) -> None:
        """Destroy the node and its publishers."""
        self._node.destroy_node()

    def wait_for_subscribers(self, timeout_s: float) -> tuple[str, ...]:
        """Wait until every non-latched topic has a subscriber; return those that have none."""
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = tuple(self._output_topic[t] for t, pub in self._publishers.items()
                            if t not in self._latched and pub.get_subscription_count() == 0)
            if not waiting or time.monotonic() >= deadline or self._stop.wait(0.02):
                return waiting

    def _publish_clock(self, bag_time_ns: int) -> None:
        self._clock.publish(Clock(clock=Duration(nanoseconds=bag_time_ns).to_msg()))

    def _wait_until(self, target: float, wall0: float) -> bool:
        """Sleep until monotonic time ``target`` while ticking ``/clock``; False if stopped."""
        period = 1.0 / self._config.clock_hz if self._clock else None
        while True:
            now = time.monotonic()
            if period is not None and now >= self._next_clock:
                self._publish_clock(self._start_ns + int((now - wall0) * self._config.rate * 1e9))
                self._next_clock = max(self._next_clock + period, now)
            if now >= target:
                return not self._stop.is_set()
            wake = target if period is None else min(target, self._next_clock)
            if self._stop.wait(wake - now):
                return False

    def _publish_latched_before_start(self, reader, connections: list[Connection]) -> None:
        """Deliver each latched topic's last message before the start point, as a latch would."""
        if self._start_ns <= reader.start_time:
            return
        last: dict[str, bytes] = {}
        latched = [c for c in connections if c.topic in self._latched]
        if not latched:
            return
        for connection, timestamp, raw in iter_messages(reader, latched):
            if timestamp >= self._start_ns:
                break
            last[connection.topic] = raw
        for topic, raw in last.items():
            self._publishers[topic].publish(bytes(raw))

    def play(self, *, progress: bool = False) -> ReplaySummary:
        """Publish the bag (once, or until stopped with ``loop``) and return what was done."""
        config = self._config
        unmatched = (self.wait_for_subscribers(config.wait_for_subscribers_s)
                     if config.wait_for_subscribers_s > 0 else ())
        counts = dict.fromkeys(self._output_topic.values(), 0)
        lateness: list[float] = []
        loops = 0
        began = time.monotonic()
        total = self._total if config.start_offset_s == 0 else None
        with open_bag(self._bag) as reader, tqdm(total=total, desc='replay', unit='msg',
                                                 disable=not progress) as bar:
            connections = [c for c in reader.connections if c.topic in self._publishers]
            self._publish_latched_before_start(reader, connections)
            while not self._stop.is_set():
                wall0 = time.monotonic()
                self._next_clock = wall0
                for connection, timestamp, raw in iter_messages(reader, connections,
                                                                start=self._start_ns):
                    target = wall0 + (timestamp - self._start_ns) * 1e-9 / config.rate
                    if not self._wait_until(target, wall0):
                        break
                    self._publishers[connection.topic].publish(bytes(raw))
                    lateness.append(time.monotonic() - target)
                    counts[self._output_topic[connection.topic]] += 1
                    bar.update()
                else:
                    loops += 1
                    if config.loop:
                        bar.reset(total=total)
                        continue
                    break
        return ReplaySummary(
            messages=counts, loops=loops, wall_s=time.monotonic() - began,
            bag_span_s=(self._end_ns - self._start_ns) * 1e-9,
            lateness_ms=np.asarray(lateness, dtype=np.float64) * 1e3,
            stopped=self._stop.is_set(), unmatched_topics=unmatched)
