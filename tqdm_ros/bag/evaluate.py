"""Score segmentations of a bag's camera frames against its ground-truth topic.

Two ways to get the predictions, one way to score them (`FrameScorer`):

- offline (`evaluate_offline`): read the bag and run a tqdm_core Predictor on every frame.
- live (`evaluate_live`): replay the bag's camera topic through a running segmentation node
  (`BagPlayer`), subscribe to the node's ``labels`` and ``confidence`` outputs, and match them to
  the ground truth by header stamp. A frame whose labels never arrive is counted as dropped (the
  node keeps only the latest frame, so a node slower than the replay drops frames). Latency is the
  time the labels arrived minus the time the player published the frame (DDS source timestamp
  of the camera message, seen by our own subscription), both on this host's clock.

Both return an `EvaluationReport` for `tqdm_ros.bag.report`. The live mode needs rclpy; the offline
mode needs torch through the Predictor. Neither is imported before it is used.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
import pathlib
import struct
import threading
import time

import numpy as np
from tqdm import tqdm
from tqdm_core.classes import ClassTable, IGNORE_INDEX
from tqdm_core.evaluation import CalibrationAccumulator, SemSegEvaluator
from tqdm_core.evaluation.figures import OverlayFrame

from tqdm_ros.bag.bag_reader import BagError, connections_for, iter_labeled_frames, iter_messages
from tqdm_ros.bag.bag_reader import LabeledFrame, open_bag, read_class_table, stamp_to_ns
from tqdm_ros.bag.make_bag import MakeBagConfig
from tqdm_ros.bag.report import EvaluationReport, ModelInfo, UNTRAINED_WARNING
from tqdm_ros.class_table_json import class_table_from_json, ClassTableFormatError

_BAG_DEFAULTS = MakeBagConfig()


@dataclass(frozen=True)
class EvaluationConfig:
    """What to read from the bag and what to keep for the report.

    Attributes:
        image_topic: camera topic (sensor_msgs/Image).
        label_topic: ground-truth topic (mono8 class ids, same stamps as the camera).
        class_table_topic: JSON class table of the ground truth (std_msgs/String).
        ground_truth_classes: class table of the ground truth for bags without a class-table
            topic; None reads it from ``class_table_topic``.
        limit: score only the first N frames; None scores all.
        num_overlays: frames drawn in the overlay grid, spread over the bag.
        calibration_bins: confidence bins of the reliability diagram and ECE.
    """

    image_topic: str = _BAG_DEFAULTS.image_topic
    label_topic: str = _BAG_DEFAULTS.label_topic
    class_table_topic: str = _BAG_DEFAULTS.class_table_topic
    ground_truth_classes: ClassTable | None = None
    limit: int | None = None
    num_overlays: int = 4
    calibration_bins: int = 15

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f'limit must be >= 1 or None, got {self.limit}')
        if self.num_overlays < 1 or self.calibration_bins < 1:
            raise ValueError('num_overlays and calibration_bins must be >= 1, got '
                             f'{self.num_overlays} and {self.calibration_bins}')


class FrameScorer:
    """Accumulates the scores of predicted frames against their ground truth.

    Args:
        ground_truth_classes: classes of the ground-truth labels.
        model_classes: classes of the predictions; mapped to the ground truth by name when they
            differ (``SemSegEvaluator.for_class_table``).
        num_frames: frames expected, to spread the overlay examples over the bag.
        config: overlay count and calibration bins.

    Raises:
        BagError: no model class corresponds to any ground-truth class.
    """

    def __init__(self, *, ground_truth_classes: ClassTable, model_classes: ClassTable,
                 num_frames: int, config: EvaluationConfig) -> None:
        self.ground_truth_classes = ground_truth_classes
        self.model_classes = model_classes
        self.evaluator = SemSegEvaluator.for_class_table(ground_truth_classes,
                                                         model_table=model_classes)
        mapping = self.evaluator.class_mapping
        if mapping is not None and (mapping == IGNORE_INDEX).all():
            raise BagError(
                f"no class of the model's table '{model_classes.name}' "
                f'({", ".join(model_classes.names)}) corresponds to a class of the ground truth '
                f"'{ground_truth_classes.name}' ({', '.join(ground_truth_classes.names)}); "
                'evaluate with a model trained for these classes')
        self.calibration = CalibrationAccumulator(config.calibration_bins)
        self.latencies_ms: list[float] = []
        self.frames_scored = 0
        self.overlays: list[OverlayFrame] = []
        picks = np.linspace(0, max(num_frames - 1, 0), min(config.num_overlays, num_frames))
        self._overlay_indices = set(np.round(picks).astype(int).tolist())

    def add(self, index: int, frame: LabeledFrame, labels: np.ndarray, confidence: np.ndarray,
            latency_ms: float | None) -> None:
        """Score one frame.

        Args:
            index: position of the frame in the bag (decides the overlay examples).
            frame: the camera frame and its ground truth.
            labels: (H, W) uint8 predicted model class ids, 255 = unlabeled.
            confidence: (H, W) float32 in [0, 1].
            latency_ms: latency of this prediction; None when it is not known.

        Raises:
            BagError: the prediction has another size than the ground truth, or the ground
                truth holds ids outside its class table.
        """
        stamp = frame.stamp_ns
        if labels.shape != frame.label.shape or confidence.shape != frame.label.shape:
            raise BagError(
                f'prediction at stamp {stamp} ns is {labels.shape[1]}x{labels.shape[0]} '
                f'(confidence {confidence.shape[1]}x{confidence.shape[0]}) but its ground truth '
                f'is {frame.label.shape[1]}x{frame.label.shape[0]}; predictions must have the '
                'camera resolution')
        table = self.ground_truth_classes
        bad = np.unique(frame.label[(frame.label >= table.num_classes)
                                    & (frame.label != IGNORE_INDEX)])
        if bad.size:
            raise BagError(
                f'ground truth at stamp {stamp} ns holds ids {bad[:10].tolist()} that are not '
                f"classes of its class table '{table.name}' ({table.num_classes} classes, "
                f'{IGNORE_INDEX} = ignore); the bag labels belong to another class table: '
                'make the bag again with the right --classes, or pass the right table')
        try:
            self.evaluator.process(labels, frame.label)
            self.calibration.process(confidence, labels, frame.label,
                                     class_mapping=self.evaluator.class_mapping)
        except ValueError as err:
            raise BagError(f'prediction at stamp {stamp} ns cannot be scored: {err}') from None
        if index in self._overlay_indices:
            self.overlays.append(OverlayFrame(
                image=frame.image, prediction=labels, confidence=confidence,
                ground_truth=frame.label, title=f'stamp {stamp * 1e-9:.3f} s'))
        self.frames_scored += 1
        if latency_ms is not None:
            self.latencies_ms.append(latency_ms)

    def report(self, *, mode: str, bag: pathlib.Path, model: ModelInfo, latency_kind: str,
               frames_in_bag: int, dropped_stamps_ns: tuple[int, ...], notes: list[str],
               run: dict) -> EvaluationReport:
        """Build the report.

        Raises:
            BagError: no frame was scored.
        """
        if not self.frames_scored:
            raise BagError(f"no frame of bag '{bag}' was scored ({frames_in_bag} frames with "
                           f'ground truth, {len(dropped_stamps_ns)} dropped); nothing to report')
        if model.trained is False:
            notes = [UNTRAINED_WARNING] + notes
        return EvaluationReport(
            mode=mode, bag=str(bag), model=model,
            ground_truth_classes=self.ground_truth_classes, model_classes=self.model_classes,
            evaluator=self.evaluator, calibration=self.calibration.result(),
            latencies_ms=np.asarray(self.latencies_ms, dtype=np.float64),
            latency_kind=latency_kind, frames_in_bag=frames_in_bag,
            frames_scored=self.frames_scored,
            dropped_stamps_ns=dropped_stamps_ns, overlays=tuple(self.overlays),
            notes=tuple(notes), run=run)


def ground_truth_classes(reader, config: EvaluationConfig) -> ClassTable:
    """Class table of the bag's ground truth: its class-table topic, or the configured table.

    Raises:
        BagError: neither is there, or both are and disagree.
    """
    has_topic = any(c.topic == config.class_table_topic for c in reader.connections)
    if not has_topic and config.ground_truth_classes is None:
        raise BagError(
            f"bag '{reader.paths[0]}' has no class-table topic {config.class_table_topic}, so "
            'the meaning of its label ids is unknown; pass the ground-truth class table '
            '(--gt-classes camvid11, cityscapes19 or a JSON file)')
    if not has_topic:
        return config.ground_truth_classes
    table = read_class_table(reader, config.class_table_topic)
    if config.ground_truth_classes is not None and config.ground_truth_classes != table:
        raise BagError(
            f"the bag's class table '{table.name}' ({table.num_classes} classes) differs from "
            f"the given '{config.ground_truth_classes.name}' "
            f'({config.ground_truth_classes.num_classes} classes); leave out --gt-classes to use '
            "the bag's")
    return table


def _label_count(reader, config: EvaluationConfig) -> int:
    """Ground-truth frames in the bag (up to ``limit``); also checks both topics exist."""
    connections = connections_for(reader, [config.image_topic, config.label_topic])
    count = sum(c.msgcount for c in connections if c.topic == config.label_topic)
    return count if config.limit is None else min(count, config.limit)


def _limited(frames: Iterator[LabeledFrame], limit: int | None) -> Iterator[LabeledFrame]:
    for index, frame in enumerate(frames):
        if limit is not None and index >= limit:
            return
        yield frame


def _unpaired_note(frames_in_bag: int, scored: int, dropped: int) -> list[str]:
    missing = frames_in_bag - scored - dropped
    return ([f'{missing} ground-truth frames had no camera frame of the same stamp and were not '
             'scored'] if missing > 0 else [])


def evaluate_offline(bag: str | pathlib.Path, predictor, *, model: ModelInfo,
                     config: EvaluationConfig = EvaluationConfig(),
                     progress: bool = False) -> EvaluationReport:
    """Run a Predictor on every camera frame of a bag that has ground truth and score it.

    Args:
        bag: rosbag2 directory with camera, ground-truth and class-table topics.
        predictor: a ``tqdm_core.Predictor``.
        model: what the predictor runs (shown in the report).
        config: topics and report options.
        progress: show a progress bar.

    Raises:
        FileNotFoundError, BagError: a missing, damaged or unsuitable bag.
    """
    bag = pathlib.Path(bag)
    with open_bag(bag) as reader:
        gt_table = ground_truth_classes(reader, config)
        frames_in_bag = _label_count(reader, config)
        scorer = FrameScorer(ground_truth_classes=gt_table, model_classes=predictor.class_table,
                             num_frames=frames_in_bag, config=config)
        frames = iter_labeled_frames(reader, image_topic=config.image_topic,
                                     label_topic=config.label_topic)
        began = time.monotonic()
        for index, frame in enumerate(tqdm(_limited(frames, config.limit), total=frames_in_bag,
                                           desc='evaluate', unit='frame',
                                           disable=not progress)):
            started = time.perf_counter()
            prediction = predictor.predict(frame.image)
            elapsed_ms = (time.perf_counter() - started) * 1e3
            scorer.add(index, frame, prediction.labels, prediction.confidence, elapsed_ms)
    details = {**model.details, **predictor.describe()}
    model = ModelInfo(name=model.name, source=model.source, trained=model.trained,
                      details=details)
    return scorer.report(
        mode='offline', bag=bag, model=model, latency_kind='Predictor time per frame',
        frames_in_bag=frames_in_bag, dropped_stamps_ns=(),
        notes=_unpaired_note(frames_in_bag, scorer.frames_scored, 0),
        run={'wall_s': time.monotonic() - began})


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


def cdr_header_stamp_ns(raw: bytes) -> int:
    """Header stamp of a serialized message whose first field is a ``std_msgs/Header``.

    CDR: a 4-byte encapsulation header (byte 1 is 1 for little endian, 0 for big endian), then
    ``stamp.sec`` (int32) and ``stamp.nanosec`` (uint32). Reading them avoids deserializing the
    camera image just to learn its stamp.
    """
    order = '<' if raw[1] & 1 else '>'
    sec, nanosec = struct.unpack_from(f'{order}iI', raw, 4)
    return sec * 1_000_000_000 + nanosec


class _NodeOutputs:
    """The node's outputs and the camera publication times, keyed by header stamp.

    Filled by subscription callbacks (executor thread), read by the scoring loop (caller).
    """

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.published_ns: dict[int, int] = {}
        self.labels: dict[int, tuple[np.ndarray, int]] = {}  # stamp -> (labels, arrival ns)
        self.confidence: dict[int, np.ndarray] = {}
        self.newest_labels_ns = -1
        self.class_table_json: str | None = None

    def on_camera(self, raw: bytes, info) -> None:
        with self.changed:
            self.published_ns[cdr_header_stamp_ns(raw)] = (
                info['source_timestamp'] or info['received_timestamp'])

    def on_labels(self, msg, info) -> None:
        from tqdm_ros.image_conversion import image_to_numpy
        stamp = stamp_to_ns(msg.header.stamp)
        labels = image_to_numpy(msg).copy()
        with self.changed:
            self.labels[stamp] = (labels, info['received_timestamp'])
            self.newest_labels_ns = max(self.newest_labels_ns, stamp)
            self.changed.notify_all()

    def on_confidence(self, msg) -> None:
        from tqdm_ros.image_conversion import image_to_numpy
        confidence = image_to_numpy(msg).astype(np.float32)
        with self.changed:
            self.confidence[stamp_to_ns(msg.header.stamp)] = confidence
            self.changed.notify_all()

    def on_class_table(self, msg) -> None:
        with self.changed:
            self.class_table_json = msg.data
            self.changed.notify_all()

    def clear(self) -> None:
        with self.changed:
            self.published_ns.clear()
            self.labels.clear()
            self.confidence.clear()
            self.newest_labels_ns = -1

    def wait(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(condition, timeout_s)

    def take(self, stamp: int, *, deadline: Callable[[], float | None]):
        """Wait for the labels and confidence of ``stamp``; None once the frame is dropped.

        A frame is dropped when a newer frame's labels arrived without its own (the node never
        goes back to an older frame), or when ``deadline()`` (monotonic seconds, None while the
        replay runs) has passed.
        """
        with self.changed:
            while True:
                if stamp in self.labels and stamp in self.confidence:
                    labels, arrival_ns = self.labels.pop(stamp)
                    return (labels, self.confidence.pop(stamp), arrival_ns,
                            self.published_ns.pop(stamp, None))
                if stamp not in self.labels and self.newest_labels_ns > stamp:
                    self.confidence.pop(stamp, None)
                    return None
                limit = deadline()
                if limit is not None and time.monotonic() >= limit:
                    return None
                self.changed.wait(0.05 if limit is None else max(0.0, limit - time.monotonic()))


def _output_topics(config: EvaluationConfig, live: LiveConfig) -> tuple[str, str]:
    """(camera topic the node segments, namespace of its outputs)."""
    from tqdm_ros.segmentation_node import camera_output_namespace
    camera = live.camera_topic or config.image_topic
    namespace = live.output_namespace or camera_output_namespace(camera, 'segmentation')
    return camera, namespace.rstrip('/')


def _first_frame(bag: pathlib.Path, image_topic: str) -> tuple[int, bytes, float]:
    """(header stamp, raw bytes) of the first camera frame, and the median frame period in s."""
    with open_bag(bag) as reader:
        connections = connections_for(reader, [image_topic])
        first, log_times = None, []
        for connection, timestamp, raw in iter_messages(reader, connections):
            log_times.append(timestamp)
            if first is None:
                first = (stamp_to_ns(reader.deserialize(raw, connection.msgtype).header.stamp),
                         bytes(raw))
    period_s = float(np.median(np.diff(log_times))) * 1e-9 if len(log_times) > 1 else 1.0
    return first[0], first[1], period_s


class _Thread(threading.Thread):
    """A thread that keeps the exception of its target for the caller to raise."""

    def __init__(self, target: Callable, name: str) -> None:
        super().__init__(target=self._run, name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None
        self.result = None

    def _run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as err:  # handed to the caller, who raises it
            self.error = err


def evaluate_live(bag: str | pathlib.Path, *, context, model: ModelInfo | None = None,
                  config: EvaluationConfig = EvaluationConfig(),
                  live: LiveConfig = LiveConfig(), record_to: str | pathlib.Path | None = None,
                  progress: bool = False) -> EvaluationReport:
    """Replay a bag's camera topic through a running segmentation node and score its outputs.

    The node must be active (``segmentation_node``, autostart) and segment ``live.camera_topic``.
    One warm-up frame (the bag's first) is sent before the replay so the cost of the node's first
    inference is not measured; its output is not scored.

    Args:
        bag: rosbag2 directory with camera, ground-truth and class-table topics.
        context: an initialised rclpy context (network-safe environment, see ROS_PIP.md).
        model: what the node runs, if the caller knows (shown in the report).
        config: topics and report options.
        live: replay rate, topics and timeouts.
        record_to: also record the node's ``labels`` and ``confidence`` into a new bag here.
        progress: show progress bars.

    Raises:
        FileNotFoundError, BagError: a missing, damaged or unsuitable bag.
        TimeoutError: no node publishes the outputs or subscribes to the camera topic.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from tqdm_ros.bag.record import RecordConfig, Recorder, subscription_qos
    from tqdm_ros.bag.replay import BagPlayer, ReplayConfig
    from tqdm_ros.class_table_publisher import LATCHED_QOS

    bag = pathlib.Path(bag)
    with open_bag(bag) as reader:
        gt_table = ground_truth_classes(reader, config)
        frames_in_bag = _label_count(reader, config)
    camera_topic, namespace = _output_topics(config, live)
    labels_topic, confidence_topic = f'{namespace}/labels', f'{namespace}/confidence'
    warmup_stamp, warmup_raw, period_s = _first_frame(bag, config.image_topic)

    outputs = _NodeOutputs()
    node = rclpy.create_node('tqdm_bag_evaluator', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name='evaluator_executor', daemon=True)
    spinner.start()
    player = recorder = None
    threads: list[_Thread] = []
    try:
        node.create_subscription(String, f'{namespace}/class_table', outputs.on_class_table,
                                 LATCHED_QOS)
        _wait_for_publishers(node, [labels_topic, confidence_topic], live.discovery_timeout_s)
        for topic, callback in ((labels_topic, outputs.on_labels),
                                (confidence_topic, outputs.on_confidence)):
            offered = [i.qos_profile for i in node.get_publishers_info_by_topic(topic)]
            node.create_subscription(Image, topic, callback,
                                     subscription_qos(offered, depth=100))
        node.create_subscription(Image, camera_topic, outputs.on_camera,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
                                 raw=True)
        if not outputs.wait(lambda: outputs.class_table_json is not None,
                            live.discovery_timeout_s):
            raise TimeoutError(f'no class table on {namespace}/class_table within '
                               f'{live.discovery_timeout_s:g} s; is the node configured?')
        model_table = node_class_table(outputs.class_table_json)
        scorer = FrameScorer(ground_truth_classes=gt_table, model_classes=model_table,
                             num_frames=frames_in_bag, config=config)

        warmup_s = _warm_up(node, outputs, camera_topic, warmup_stamp, warmup_raw, live)
        rate = live.rate or min(1.0, period_s / (live.warmup_margin * warmup_s))
        outputs.clear()
        player = BagPlayer(bag, context=context, config=ReplayConfig(
            rate=rate, topics=(config.image_topic,), clock_hz=0.0,
            wait_for_subscribers_s=live.discovery_timeout_s,
            remap=((config.image_topic, camera_topic),) if camera_topic != config.image_topic
            else ()))

        if record_to is not None:
            recorder = Recorder(record_to, context=context, config=RecordConfig(
                topics=(labels_topic, confidence_topic),
                discovery_timeout_s=live.discovery_timeout_s))
            threads.append(_Thread(recorder.run, 'recorder'))
            threads[-1].start()
            _wait_for_recorder(recorder, threads[-1], 2, live.discovery_timeout_s)

        replay_thread = _Thread(player.play, 'replay')
        threads.append(replay_thread)
        replay_thread.start()
        ended: dict[str, float] = {}

        def deadline() -> float | None:
            if replay_thread.error is not None:
                raise replay_thread.error
            if replay_thread.is_alive():
                return None
            ended.setdefault('at', time.monotonic())
            return ended['at'] + live.settle_timeout_s

        dropped: list[int] = []
        began = time.monotonic()
        with open_bag(bag) as reader:
            frames = iter_labeled_frames(reader, image_topic=config.image_topic,
                                         label_topic=config.label_topic)
            for index, frame in enumerate(tqdm(_limited(frames, config.limit),
                                               total=frames_in_bag, desc='evaluate live',
                                               unit='frame', disable=not progress)):
                taken = outputs.take(frame.stamp_ns, deadline=deadline)
                if taken is None:
                    dropped.append(frame.stamp_ns)
                    continue
                labels, confidence, arrival_ns, published_ns = taken
                # Our camera subscription may have missed a frame the node got: latency unknown.
                latency_ms = None if published_ns is None else (arrival_ns - published_ns) * 1e-6
                scorer.add(index, frame, labels, confidence, latency_ms)
        player.stop()
        replay_thread.join(live.settle_timeout_s)
        if replay_thread.error is not None:
            raise replay_thread.error
        wall_s = time.monotonic() - began
    finally:
        if player is not None:
            player.stop()
        if recorder is not None:
            recorder.stop()
        for thread in threads:
            thread.join(live.settle_timeout_s)
        if recorder is not None:
            recorder.close()
        if player is not None:
            player.close()
        executor.shutdown()
        spinner.join(live.settle_timeout_s)
        node.destroy_node()
    for thread in threads:
        if thread.error is not None:
            raise thread.error
    model = model or ModelInfo(name=model_table.name, source=f'segmentation node at {namespace}',
                               trained=None)
    notes = _unpaired_note(frames_in_bag, scorer.frames_scored, len(dropped))
    if dropped:
        notes.append(f'{len(dropped)} of {frames_in_bag} frames were dropped by the node (it '
                     f'keeps only the newest frame): replay slower than rate {rate:.3g}')
    return scorer.report(
        mode='live', bag=bag, model=model,
        latency_kind='label arrival minus frame publication', frames_in_bag=frames_in_bag,
        dropped_stamps_ns=tuple(dropped), notes=notes,
        run={'replay_rate': rate, 'rate_chosen_automatically': live.rate is None,
             'warmup_s': warmup_s, 'wall_s': wall_s, 'camera_topic': camera_topic,
             'output_namespace': namespace,
             'recorded_outputs': None if record_to is None else pathlib.Path(record_to).name})


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


def _warm_up(node, outputs: _NodeOutputs, camera_topic: str, stamp: int, raw: bytes,
             live: LiveConfig) -> float:
    """Send one frame to the node once it subscribes; return the seconds until its labels came.

    Sent once, never repeated: a repeat could be segmented again and answer during the replay.

    Raises:
        TimeoutError: nothing subscribes to ``camera_topic``, or no answer came.
    """
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    publisher = node.create_publisher(
        Image, camera_topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
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
