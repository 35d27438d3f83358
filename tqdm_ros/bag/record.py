"""Record chosen topics into a rosbag2 bag, with rclpy only (no ``ros2 bag``).

Subscriptions are ``raw=True``: the CDR bytes are written as received, never deserialized, so a
recording costs one copy per message. The bag is written into a hidden staging directory and moved
into place only when recording ends normally (duration, message count, idle timeout, Ctrl-C or
`Recorder.stop`); on an error the staging directory is removed, so there is never a half-written
bag at the output path.
"""
from __future__ import annotations

from dataclasses import dataclass
import pathlib
import threading
import time

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime
from rosbags.rosbag2 import Writer
from tqdm import tqdm

from tqdm_ros.bag.bag_reader import BagError, message_class, staged_bag_path, typestore_for
from tqdm_ros.bag.make_bag import BAG_VERSION, STORAGES

_GRAPH_POLL_S = 0.1  # how often unknown topics are looked up in the ROS graph


@dataclass(frozen=True)
class RecordConfig:
    """What to record and when to stop.

    Attributes:
        topics: topics to record (at least one).
        storage: ``sqlite3`` or ``mcap``.
        duration_s: stop this long after every topic is subscribed; None: no limit.
        max_messages: stop after this many messages over all topics; None: no limit.
        idle_timeout_s: stop when no message arrived for this long after the first one; None:
            never. Handy to record a node's outputs while a bag is replayed through it.
        discovery_timeout_s: fail if a topic has no publisher after this long.
        use_sim_time: log messages with ``/clock`` time instead of the system clock.
        queue_depth: history depth of the non-latched subscriptions.
    """

    topics: tuple[str, ...]
    storage: str = 'sqlite3'
    duration_s: float | None = None
    max_messages: int | None = None
    idle_timeout_s: float | None = None
    discovery_timeout_s: float = 10.0
    use_sim_time: bool = False
    queue_depth: int = 100

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError('name at least one topic to record')
        # The recorder node lives in the root namespace: a relative name is the absolute one, which
        # is how the ROS graph and the bag name it.
        object.__setattr__(self, 'topics', tuple(
            topic if topic.startswith('/') else f'/{topic}' for topic in self.topics))
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got '{self.storage}'")
        for name in ('duration_s', 'max_messages', 'idle_timeout_s'):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f'{name} must be > 0 or None, got {value}')
        if not self.discovery_timeout_s > 0 or self.queue_depth < 1:
            raise ValueError('discovery_timeout_s must be > 0 and queue_depth >= 1')


@dataclass(frozen=True)
class RecordSummary:
    """What was recorded.

    Attributes:
        path: the finished bag.
        messages: messages written per topic.
        duration_s: wall time from the first subscription to the end.
        stop_reason: ``duration``, ``max_messages``, ``idle`` or ``stopped``.
    """

    path: pathlib.Path
    messages: dict[str, int]
    duration_s: float
    stop_reason: str


def _duration_to_qos_time(duration) -> QosTime:
    nanoseconds = duration.nanoseconds
    return QosTime(nanoseconds // 1_000_000_000, nanoseconds % 1_000_000_000)


def offered_qos(profile: QoSProfile) -> Qos:
    """Convert an rclpy QoS profile to rosbag2 metadata form (the enums share rmw's numbering)."""
    return Qos(QosHistory(int(profile.history)), profile.depth,
               QosReliability(int(profile.reliability)), QosDurability(int(profile.durability)),
               _duration_to_qos_time(profile.deadline), _duration_to_qos_time(profile.lifespan),
               QosLiveliness(int(profile.liveliness)),
               _duration_to_qos_time(profile.liveliness_lease_duration),
               bool(profile.avoid_ros_namespace_conventions))


def subscription_qos(offered: list[QoSProfile], *, depth: int) -> QoSProfile:
    """Choose a QoS that receives from every publisher.

    Best effort if any publisher offers only that; transient-local (to catch latched messages)
    only if all publishers are.
    """
    best_effort = any(p.reliability == ReliabilityPolicy.BEST_EFFORT for p in offered)
    latched = bool(offered) and all(
        p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class Recorder:
    """Writes the raw messages of chosen topics into a new bag until a stop condition.

    `run` blocks and spins its own executor, so messages are written on the thread that opened
    the bag (sqlite3 requires it). `stop` may be called from another thread or a signal handler.
    """

    def __init__(self, output: str | pathlib.Path, *, config: RecordConfig,
                 context: Context | None = None, node_name: str = 'tqdm_bag_recorder') -> None:
        self._output = pathlib.Path(output)
        if self._output.exists():
            raise FileExistsError(
                f"'{self._output}' exists; remove it or choose another output path")
        self._config = config
        self._stop = threading.Event()
        self._node = rclpy.create_node(
            node_name, context=context,
            parameter_overrides=[Parameter('use_sim_time', value=config.use_sim_time)])
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self._node)

    @property
    def node(self):
        """The rclpy node that owns the subscriptions."""
        return self._node

    def stop(self) -> None:
        """Ask `run` to finish the bag and return (thread and signal safe)."""
        self._stop.set()

    def close(self) -> None:
        """Destroy the executor and the node."""
        self._executor.shutdown()
        self._node.destroy_node()

    def run(self, *, progress: bool = False) -> RecordSummary:
        """Record until a stop condition, then finish the bag; return what was recorded.

        Raises:
            TimeoutError: a topic got no publisher within ``discovery_timeout_s`` (no bag is left).
            BagError: a topic's type is unknown or its publishers disagree on the type.
        """
        config = self._config
        store = typestore_for()
        counts = dict.fromkeys(config.topics, 0)
        state = {'last_message': None}
        with staged_bag_path(self._output) as staging, \
                tqdm(total=config.max_messages, desc='record', unit='msg',
                     disable=not progress) as bar:
            writer = Writer(staging, version=BAG_VERSION,
                            storage_plugin=STORAGES[config.storage])
            writer.open()
            subscriptions = []
            try:
                began = time.monotonic()
                all_subscribed_at = None
                next_poll = began
                stop_reason = ''
                while not self._stop.is_set():
                    now = time.monotonic()
                    if all_subscribed_at is None and now >= next_poll:
                        next_poll = now + _GRAPH_POLL_S
                        pending = [t for t in config.topics if t not in
                                   {s.topic_name for s in subscriptions}]
                        for topic in pending:
                            subscription = self._subscribe(topic, writer, store, counts, state,
                                                           bar)
                            if subscription is not None:
                                subscriptions.append(subscription)
                        if len(subscriptions) == len(config.topics):
                            all_subscribed_at = now
                        elif now - began > config.discovery_timeout_s:
                            self._raise_undiscovered(subscriptions)
                    stop_reason = self._stop_reason(counts, all_subscribed_at, state)
                    if stop_reason:
                        break
                    self._executor.spin_once(timeout_sec=0.02)
            except BaseException:
                writer.abort()
                raise
            finally:
                for subscription in subscriptions:
                    self._node.destroy_subscription(subscription)
            writer.close()
        return RecordSummary(path=self._output, messages=counts,
                             duration_s=time.monotonic() - began,
                             stop_reason=stop_reason or 'stopped')

    def _raise_undiscovered(self, subscriptions: list) -> None:
        subscribed = {s.topic_name for s in subscriptions}
        missing = [t for t in self._config.topics if t not in subscribed]
        published = sorted(name for name, _ in self._node.get_topic_names_and_types())
        raise TimeoutError(
            f"no publisher of {', '.join(missing)} within {self._config.discovery_timeout_s} s;"
            f" topics in the ROS graph: {', '.join(published) or '(none)'}; start the "
            'publisher first, check ROS_DOMAIN_ID, or raise the discovery timeout')

    def _stop_reason(self, counts: dict[str, int], all_subscribed_at: float | None,
                     state: dict) -> str:
        config = self._config
        now = time.monotonic()
        if config.max_messages is not None and sum(counts.values()) >= config.max_messages:
            return 'max_messages'
        if (config.duration_s is not None and all_subscribed_at is not None
                and now - all_subscribed_at >= config.duration_s):
            return 'duration'
        if (config.idle_timeout_s is not None and state['last_message'] is not None
                and now - state['last_message'] >= config.idle_timeout_s):
            return 'idle'
        return ''

    def _subscribe(self, topic: str, writer: Writer, store, counts: dict[str, int],
                   state: dict, bar: tqdm):
        """Subscribe to ``topic`` if it is published now; None while it is not."""
        publishers = self._node.get_publishers_info_by_topic(topic)
        if not publishers:
            return None
        types = sorted({info.topic_type for info in publishers})
        if len(types) > 1:
            raise BagError(f"topic {topic} is published with several types ({', '.join(types)});"
                           ' record one type per topic')
        msgtype = types[0]
        if msgtype not in store.fielddefs:
            store = typestore_for([msgtype])
        offered = [info.qos_profile for info in publishers]
        connection = writer.add_connection(
            topic, msgtype, typestore=store,
            offered_qos_profiles=[offered_qos(p) for p in offered])
        clock = self._node.get_clock()

        def write(raw: bytes) -> None:
            writer.write(connection, clock.now().nanoseconds, raw)
            counts[topic] += 1
            state['last_message'] = time.monotonic()
            bar.update()

        return self._node.create_subscription(
            message_class(msgtype), topic, write,
            subscription_qos(offered, depth=self._config.queue_depth), raw=True)
