"""Frames of a live evaluation: a bag replayed through a running segmentation node.

`live_node_source` finds the node's outputs, reads its class table, sends one warm-up frame (so
the cost of its first inference is not measured), then replays the bag's camera topic
(`BagPlayer`) and, optionally, records the node's outputs. `LiveSession.frames` yields, for each
labelled bag frame, the node's ``labels`` and ``confidence`` matched by header stamp as a
`ScoredFrame`, or a `DroppedFrame` when they will not come (the node keeps only the newest
frame, so a node slower than the replay drops frames; a lost message drops its frame too), which
the order of publication tells, not the order of the stamps. Latency is the time the labels
arrived minus the time the player published the frame (DDS source timestamp of the camera
message, seen by our own subscription), both on this host's clock. Scoring is
`tqdm_core.evaluation`'s.

rclpy is imported only when a session starts.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
import pathlib
import threading
import time

import numpy as np
from tqdm_core.classes import ClassTable
from tqdm_core.evaluation.scoring import DroppedFrame, ScoredFrame

from tqdm_ros.bag.bag_reader import BagError, cdr_header_stamp_ns, connections_for, iter_messages
from tqdm_ros.bag.bag_reader import message_class, open_bag, stamp_to_ns
from tqdm_ros.bag.evaluate import BagFrames, labeled_frames
from tqdm_ros.class_table_json import class_table_from_json, ClassTableFormatError
from tqdm_ros.rclpy_features import MESSAGE_INFO_CALLBACKS

# Longest wait, after the last answer, for the node's /diagnostics to count it: a few of its
# periods (1 s by default).
DIAGNOSTICS_WAIT_S = 5.0


@dataclass(frozen=True)
class LiveConfig:
    """How to drive a running segmentation node with a bag.

    Attributes:
        rate: replay speed factor; None chooses one from the node's time on the warm-up frame
            (``warmup_margin`` times slower than the node, never faster than recorded).
        camera_topic: topic the node segments; None: the bag's camera topic.
        output_namespace: where the node publishes ``labels``, ``confidence`` and
            ``class_table``; None: ``<camera topic namespace>/segmentation``, the node default.
        discovery_timeout_s: longest wait for the node's topics and its camera subscription.
        warmup_timeout_s: longest wait for the node's answer to the warm-up frame (a big model
            on a CPU takes many seconds on its first frame).
        settle_timeout_s: after the last frame is published, how long to wait for outputs.
        warmup_margin: with ``rate`` None, the frame period is at least this many times the
            node's warm-up time.
    """

    rate: float | None = 1.0
    camera_topic: str | None = None
    output_namespace: str | None = None
    discovery_timeout_s: float = 30.0
    warmup_timeout_s: float = 300.0
    settle_timeout_s: float = 10.0
    warmup_margin: float = 1.5

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f'rate must be > 0 (or None for auto), got {self.rate}')
        if min(self.discovery_timeout_s, self.warmup_timeout_s, self.settle_timeout_s) <= 0:
            raise ValueError('the timeouts must be > 0')
        if self.warmup_margin < 1:
            raise ValueError(f'warmup_margin must be >= 1, got {self.warmup_margin}')


def node_class_table(text: str) -> ClassTable:
    """Parse the JSON class table the segmentation node latches on ``class_table``."""
    try:
        return class_table_from_json(text)
    except ClassTableFormatError as err:
        raise BagError(f"the node's class table: {err}; is a tqdm segmentation node publishing "
                       'it?') from None


class _NodeOutputs:
    """The node's outputs and the camera publication times of the labelled frames, by stamp.

    Filled by subscription callbacks (executor thread), read by the scoring loop (caller).

    The node answers frames in the order they were published and skips some (it keeps only the
    newest frame); each output topic delivers in the order the node published. So once a topic
    brings the output of a frame published *after* frame F, F's output on that topic will never
    come: the node skipped F, or the message was lost. Publication order is the bag's camera
    order, not header-stamp order (stamps of a recording need not increase).

    Only outputs of frames still awaited (``wanted``, less the frames taken) are kept, so
    neither frames without ground truth nor late answers pile up.

    Args:
        publication_order: header stamp -> position of the camera frame in the replay.
        wanted: stamps whose outputs to keep.
    """

    def __init__(self, publication_order: Mapping[int, int], wanted: Iterable[int]) -> None:
        self.changed = threading.Condition()
        self._order = dict(publication_order)
        self._wanted = set(wanted)
        self.published_ns: dict[int, int] = {}
        self.labels: dict[int, tuple[np.ndarray, int]] = {}  # stamp -> (labels, arrival ns)
        self.confidence: dict[int, np.ndarray] = {}
        # Position of the latest-published frame each topic has answered, -1 before any.
        self._newest_answered = {'labels': -1, 'confidence': -1}
        self.confidence_lost = 0  # frames whose labels came but whose confidence never will
        self.class_table_json: str | None = None

    def on_camera(self, raw: bytes, info) -> None:
        # Without message info (Humble's rclpy) the reception time stands for the publication.
        published = (info['source_timestamp'] or info['received_timestamp']) if info else None
        stamp = cdr_header_stamp_ns(raw)
        with self.changed:
            if stamp in self._wanted:
                self.published_ns[stamp] = published or time.time_ns()

    def on_labels(self, msg, info) -> None:
        from tqdm_ros.image_conversion import image_to_numpy
        stamp = stamp_to_ns(msg.header.stamp)
        arrival = info['received_timestamp'] if info else time.time_ns()
        with self.changed:
            if self._answered('labels', stamp):
                self.labels[stamp] = (image_to_numpy(msg).copy(), arrival)

    def on_confidence(self, msg) -> None:
        from tqdm_ros.image_conversion import image_to_numpy
        stamp = stamp_to_ns(msg.header.stamp)
        with self.changed:
            if self._answered('confidence', stamp):
                self.confidence[stamp] = image_to_numpy(msg).astype(np.float32)

    def _answered(self, topic: str, stamp: int) -> bool:
        """Note an output of ``stamp`` on ``topic`` (lock held); tell whether to keep it."""
        position = self._order.get(stamp)
        if position is None:  # not a frame of this replay
            return False
        self._newest_answered[topic] = max(self._newest_answered[topic], position)
        self.changed.notify_all()
        return stamp in self._wanted

    def on_class_table(self, msg) -> None:
        with self.changed:
            self.class_table_json = msg.data
            self.changed.notify_all()

    def restart(self, wanted: Iterable[int]) -> None:
        """Forget every output (the warm-up's) and await those of ``wanted`` from now on."""
        with self.changed:
            self.published_ns.clear()
            self.labels.clear()
            self.confidence.clear()
            self._newest_answered = {'labels': -1, 'confidence': -1}
            self._wanted = set(wanted)

    def wait(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(condition, timeout_s)

    def take(self, stamp: int, *, deadline: Callable[[], float | None]):
        """Wait for the labels and confidence of ``stamp``; None once the frame is dropped.

        A frame is dropped when an output topic still missing its output has brought one of a
        frame published later (see the class), or when ``deadline()`` (monotonic seconds, None
        while the replay runs) has passed. Either way its outputs are not awaited any more.

        Returns:
            (labels, confidence, arrival ns of the labels, publication ns or None), or None.
        """
        position = self._order[stamp]
        with self.changed:
            try:
                while True:
                    if stamp in self.labels and stamp in self.confidence:
                        labels, arrival_ns = self.labels[stamp]
                        return (labels, self.confidence[stamp], arrival_ns,
                                self.published_ns.get(stamp))
                    missing = [topic for topic, outputs in (('labels', self.labels),
                                                            ('confidence', self.confidence))
                               if stamp not in outputs]
                    limit = deadline()
                    if (any(self._newest_answered[topic] > position for topic in missing)
                            or (limit is not None and time.monotonic() >= limit)):
                        if missing == ['confidence']:
                            self.confidence_lost += 1
                        return None
                    self.changed.wait(0.05 if limit is None
                                      else max(0.0, limit - time.monotonic()))
            finally:
                self._wanted.discard(stamp)
                for outputs in (self.labels, self.confidence, self.published_ns):
                    outputs.pop(stamp, None)


class _NodeModelStatus:
    """The model status (preset, device, precision, mode, ...) the node segmenting a camera topic reports on
    /diagnostics, for the report: the node runs in another process, so this is the only way to know what it ran.

    Args:
        camera_topic: the camera topic the node subscribes to (absolute name).
    """

    def __init__(self, camera_topic: str) -> None:
        self._camera_suffix = ': /' + camera_topic.lstrip('/')
        self._changed = threading.Condition()
        self._values: dict[str, str] = {}
        self._camera_values: dict[str, str] = {}

    def on_diagnostics(self, msg) -> None:
        # The node's statuses are '<node>: model' and '<node>: <camera topic>', in one array.
        nodes = {status.name[:-len(self._camera_suffix)] for status in msg.status
                 if status.name.endswith(self._camera_suffix)}
        for status in msg.status:
            node, _, kind = status.name.rpartition(': ')
            values = {kv.key: kv.value for kv in status.values}
            if kind == 'model' and node in nodes:
                if values.get('preset'):  # a configured node (the finalized one reports none)
                    with self._changed:
                        self._values = {'node': node, **values}
            elif status.name.endswith(self._camera_suffix) and 'inference_p50_ms' in values:
                with self._changed:  # its model time: a window of frames, so none before one
                    self._camera_values = values
                    self._changed.notify_all()

    @property
    def values(self) -> dict[str, str]:
        """The latest model status of the node (empty when none was heard)."""
        with self._changed:
            return dict(self._values)

    @property
    def model_time_p50_ms(self) -> float | None:
        """The node's median model time per batch (one frame a batch with one camera) over its
        recent frames, warm-up included (``inference_p50_ms``); None when it reported none."""
        with self._changed:
            value = self._camera_values.get('inference_p50_ms')
        return None if value is None else float(value)

    def wait_for_processed(self, count: int, timeout_s: float) -> bool:
        """Wait until the camera status counts ``count`` processed frames (the status comes
        once a diagnostics period); True at once when the node reported no camera status."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._camera_values or
                int(self._camera_values.get('processed', 0)) >= count, timeout_s)


class _Thread(threading.Thread):
    """A thread that keeps the exception of its target for the caller to raise."""

    def __init__(self, target: Callable, name: str) -> None:
        super().__init__(target=self._run, name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._target_fn()
        except BaseException as err:  # handed to the caller, who raises it
            self.error = err


class LiveSession:
    """A node found, warmed up and being fed the bag (see `live_node_source`).

    Attributes:
        model_classes: the node's class table.
        run: how the session runs: replay rate, warm-up time, topics, recorded outputs.
    """

    def __init__(self, *, model_classes: ClassTable, run: dict, frames: BagFrames,
                 outputs: _NodeOutputs, replay: _Thread, settle_timeout_s: float,
                 model_status: _NodeModelStatus | None = None) -> None:
        self.model_classes = model_classes
        self.run = run
        self._model_status = model_status
        self._bag_frames = frames
        self._outputs = outputs
        self._replay = replay
        self._settle_timeout_s = settle_timeout_s
        self._replay_ended_at: float | None = None

    def frames(self) -> Iterator[ScoredFrame | DroppedFrame]:
        """Yield the node's answer to each labelled bag frame, in bag order, as it arrives.

        Raises:
            Any error of the replay thread.
        """
        answered = 1  # the warm-up frame
        with open_bag(self._bag_frames.path) as reader:
            for stamp, sample in labeled_frames(reader, self._bag_frames):
                taken = self._outputs.take(stamp, deadline=self._deadline)
                if taken is None:
                    yield DroppedFrame(name=sample.name, source_file=sample.source_file)
                    continue
                answered += 1
                labels, confidence, arrival_ns, published_ns = taken
                # Our camera subscription may have missed a frame the node got: latency unknown.
                latency_ms = None if published_ns is None else (arrival_ns - published_ns) * 1e-6
                yield ScoredFrame(sample=sample, labels=labels, confidence=confidence,
                                  latency_ms=latency_ms)
        if self._model_status is not None:  # so its model time includes the last frames
            self._model_status.wait_for_processed(answered, DIAGNOSTICS_WAIT_S)

    @property
    def model_time_p50_ms(self) -> float | None:
        """The node's median model time in ms as it reported it on /diagnostics; None if it
        reported none."""
        return None if self._model_status is None else self._model_status.model_time_p50_ms

    @property
    def model_details(self) -> dict[str, str]:
        """What the node reported about its model on /diagnostics (preset, checkpoint, device,
        precision, mode, ...); empty if it reported nothing."""
        return {} if self._model_status is None else self._model_status.values

    @property
    def confidence_lost(self) -> int:
        """How many of the dropped frames got their labels but never their confidence."""
        return self._outputs.confidence_lost

    def _deadline(self) -> float | None:
        """None while the replay runs, then the time after which no more output is awaited."""
        if self._replay.error is not None:
            raise self._replay.error
        if self._replay.is_alive():
            return None
        if self._replay_ended_at is None:
            self._replay_ended_at = time.monotonic()
        return self._replay_ended_at + self._settle_timeout_s


@contextmanager
def live_node_source(frames: BagFrames, *, context, live: LiveConfig = LiveConfig(),
                     record_to: str | pathlib.Path | None = None) -> Iterator[LiveSession]:
    """Start feeding a running segmentation node with a bag; stop and clean up on exit.

    The node must be active (``segmentation_node``, autostart) and segment ``live.camera_topic``.

    Args:
        frames: the bag and its topics.
        context: an initialised rclpy context (network-safe environment, see ROS_PIP.md).
        live: replay rate, topics and timeouts.
        record_to: also record the node's ``labels`` and ``confidence`` into a new bag here.

    Raises:
        TimeoutError: no node publishes the outputs or subscribes to the camera topic.
        BagError: the node publishes no valid class table.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from tqdm_ros.bag.record import RecordConfig, Recorder, subscription_qos
    from tqdm_ros.bag.replay import BagPlayer, ReplayConfig
    from tqdm_ros.camera_topics import camera_output_namespace
    from tqdm_ros.class_table_publisher import LATCHED_QOS
    from tqdm_ros.spinning_node import spinning_node

    camera_topic = live.camera_topic or frames.image_topic
    namespace = (live.output_namespace
                 or camera_output_namespace(camera_topic, 'segmentation')).rstrip('/')
    labels_topic, confidence_topic = f'{namespace}/labels', f'{namespace}/confidence'
    plan = _replay_plan(frames)
    camera_type = plan.camera_type
    # Until the replay starts, only the answer to the warm-up frame is awaited.
    outputs = _NodeOutputs(plan.publication_order, wanted=[plan.first_stamp])
    model_status = _NodeModelStatus(camera_topic)
    player = recorder = None
    threads: list[_Thread] = []
    with spinning_node('tqdm_bag_evaluator', context=context,
                       join_timeout_s=live.settle_timeout_s) as node:
        try:
            node.create_subscription(String, f'{namespace}/class_table', outputs.on_class_table,
                                     LATCHED_QOS)
            node.create_subscription(DiagnosticArray, '/diagnostics', model_status.on_diagnostics,
                                     10)
            _wait_for_publishers(node, [labels_topic, confidence_topic], live.discovery_timeout_s)
            on_labels, on_camera = outputs.on_labels, outputs.on_camera
            if not MESSAGE_INFO_CALLBACKS:
                on_labels, on_camera = (lambda msg: outputs.on_labels(msg, None),
                                        lambda raw: outputs.on_camera(raw, None))
            for topic, callback in ((labels_topic, on_labels),
                                    (confidence_topic, outputs.on_confidence)):
                offered = [i.qos_profile for i in node.get_publishers_info_by_topic(topic)]
                node.create_subscription(Image, topic, callback,
                                         subscription_qos(offered, depth=100))
            # Best effort matches the player whichever reliability the bag recorded (a
            # reliable reader never hears a best-effort camera).
            node.create_subscription(camera_type, camera_topic, on_camera,
                                     QoSProfile(depth=100,
                                                reliability=ReliabilityPolicy.BEST_EFFORT),
                                     raw=True)
            if not outputs.wait(lambda: outputs.class_table_json is not None,
                                live.discovery_timeout_s):
                raise TimeoutError(f'no class table on {namespace}/class_table within '
                                   f'{live.discovery_timeout_s:g} s; is the node configured?')
            model_classes = node_class_table(outputs.class_table_json)
            warmup_s = _warm_up(node, outputs, camera_topic, camera_type, plan.first_stamp,
                                plan.first_raw, live)
            rate = live.rate or min(1.0, plan.period_s / (live.warmup_margin * warmup_s))
            outputs.restart(wanted=plan.labelled)
            player = BagPlayer(frames.path, context=context, config=ReplayConfig(
                rate=rate, topics=(frames.image_topic,), clock_hz=0.0,
                wait_for_subscribers_s=live.discovery_timeout_s,
                remap=(((frames.image_topic, camera_topic),)
                       if camera_topic != frames.image_topic else ())))
            if record_to is not None:
                recorder = Recorder(record_to, context=context, config=RecordConfig(
                    topics=(labels_topic, confidence_topic),
                    discovery_timeout_s=live.discovery_timeout_s))
                threads.append(_Thread(recorder.run, 'recorder'))
                threads[-1].start()
                _wait_for_recorder(recorder, threads[-1], 2, live.discovery_timeout_s)
            threads.append(_Thread(player.play, 'replay'))
            threads[-1].start()
            yield LiveSession(
                model_classes=model_classes, frames=frames, outputs=outputs, replay=threads[-1],
                settle_timeout_s=live.settle_timeout_s, model_status=model_status,
                run={'replay_rate': rate, 'rate_chosen_automatically': live.rate is None,
                     'warmup_s': warmup_s, 'camera_topic': camera_topic,
                     'output_namespace': namespace,
                     'recorded_outputs': (None if record_to is None
                                          else pathlib.Path(record_to).name)})
        finally:
            for job in (player, recorder):
                if job is not None:
                    job.stop()
            for thread in threads:
                thread.join(live.settle_timeout_s)
            for job in (recorder, player):
                if job is not None:
                    job.close()
    for thread in threads:
        if thread.error is not None:
            raise thread.error


@dataclass(frozen=True)
class _ReplayPlan:
    """What the replay of a bag's camera topic publishes, read before it starts.

    Attributes:
        first_stamp: header stamp of the first camera frame (also the warm-up frame).
        first_raw: that frame's serialized message.
        camera_type: rclpy class of the camera messages (Image or CompressedImage).
        period_s: median camera frame period in s (log time).
        publication_order: header stamp -> position of the camera frame in the replay (log-time
            order; a stamp that occurs twice keeps its first position).
        labelled: stamps of the camera frames with ground truth.
    """

    first_stamp: int
    first_raw: bytes
    camera_type: type
    period_s: float
    publication_order: dict[int, int]
    labelled: frozenset[int]


def _replay_plan(frames: BagFrames) -> _ReplayPlan:
    """Read the camera and ground-truth stamps of a bag (from the raw messages: no decoding)."""
    with open_bag(frames.path) as reader:
        connections = connections_for(reader, [frames.image_topic, frames.label_topic])
        first, log_times, order, label_stamps = None, [], {}, set()
        for connection, timestamp, raw in iter_messages(reader, connections):
            stamp = cdr_header_stamp_ns(raw)
            if connection.topic == frames.label_topic:
                label_stamps.add(stamp)
                continue
            order.setdefault(stamp, len(log_times))
            log_times.append(timestamp)
            if first is None:
                first = (stamp, bytes(raw), message_class(connection.msgtype))
    period_s = float(np.median(np.diff(log_times))) * 1e-9 if len(log_times) > 1 else 1.0
    return _ReplayPlan(first_stamp=first[0], first_raw=first[1], camera_type=first[2],
                       period_s=period_s, publication_order=order,
                       labelled=frozenset(label_stamps & order.keys()))


def _wait_for_publishers(node, topics: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [t for t in topics if node.count_publishers(t) == 0]
        if not missing:
            return
        if time.monotonic() > deadline:
            published = sorted(name for name, _ in node.get_topic_names_and_types())
            raise TimeoutError(
                f"no segmentation node publishes {', '.join(missing)} within {timeout_s:g} s; "
                'start it (segmentation_node --ros-args --params-file config/segment.yaml) or '
                f"pass its output namespace; topics in the ROS graph: {', '.join(published)}")
        time.sleep(0.05)


def _wait_for_recorder(recorder, thread: _Thread, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(list(recorder.node.subscriptions)) < count:
        if thread.error is not None:
            raise thread.error
        if time.monotonic() > deadline:
            raise TimeoutError(f'the recorder did not subscribe within {timeout_s:g} s')
        time.sleep(0.05)


def _warm_up(node, outputs: _NodeOutputs, camera_topic: str, camera_type: type, stamp: int,
             raw: bytes, live: LiveConfig) -> float:
    """Send one frame to the node once it subscribes; return the seconds until its labels came.

    Sent once, never repeated: a repeat could be segmented again and answer during the replay.

    Raises:
        TimeoutError: nothing subscribes to ``camera_topic``, or no answer came.
    """
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    publisher = node.create_publisher(
        camera_type, camera_topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    try:
        deadline = time.monotonic() + live.discovery_timeout_s
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f'nothing subscribes to {camera_topic} within {live.discovery_timeout_s:g} s;'
                    ' start the segmentation node on this topic (input_topics) and activate it')
            time.sleep(0.05)
        # Matching is seen by each side on its own; give the node's side a moment too.
        time.sleep(0.5)
        sent = time.monotonic()
        publisher.publish(raw)
        if not outputs.wait(lambda: stamp in outputs.labels, live.warmup_timeout_s):
            raise TimeoutError(
                f'the node did not answer the warm-up frame on {camera_topic} within '
                f'{live.warmup_timeout_s:g} s; see its log (model loading failed, frames rejected)'
                ', or raise the warm-up timeout for a slow model')
        return time.monotonic() - sent
    finally:
        node.destroy_publisher(publisher)
