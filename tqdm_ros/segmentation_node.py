"""The tqdm semantic segmentation node: a lifecycle node over the tqdm_core Predictor.

Lifecycle: ``configure`` validates the parameters, loads the model and advertises the outputs
(class tables are latched from then on); ``activate`` subscribes to the cameras and starts the
inference worker; ``deactivate`` unsubscribes and stops the worker; ``cleanup`` frees the model.
Any failure during ``configure`` is logged with its reason before the transition fails. A
configured node applies ``overlay_alpha``, ``max_rate_hz`` and ``confidence_threshold`` at once
(the class tables are re-sent with a new threshold) and refuses a change of any other parameter,
saying to clean it up first; setting a parameter to the value it has is always accepted. After
``shutdown`` the console script exits.

As a plain console script (pip-only installs, no lifecycle manager) it configures and activates
itself unless ``autostart`` is false:

    segmentation_node --ros-args --params-file config/segment.yaml

Cameras send ``sensor_msgs/Image`` or, with ``input_transport: compressed`` (or a topic ending
in ``/compressed``), ``sensor_msgs/CompressedImage`` (JPEG, PNG), decoded by the worker.

Threading: subscription callbacks only check the message layout (constant time; for compressed
frames the size in the JPEG/PNG header) and put the frame into its camera's one-slot buffer
(latest frame wins, replaced frames are counted as dropped; frames lost before the callback are
counted from the publisher's sequence numbers, :mod:`tqdm_ros.input_loss`). One worker thread
takes every ready frame, decodes it, runs the model (one batch per image size, so cameras that
deliver together share a forward pass) and publishes. The executor never waits on the model.

Outputs, under ``<camera namespace>/<output_namespace>/`` for each input topic (e.g.
``/camera/image_raw`` -> ``/camera/segmentation/``), all with the input header and resolution,
each computed only while it has subscribers:

- ``labels``: mono8 class ids, 255 = unlabeled (confidence below ``confidence_threshold``)
- ``confidence``: 32FC1 max class probability in [0, 1]; ``confidence_mono8``: the same x 255
- ``color_mask``, ``overlay``: rgb8 class colours, and the colours blended over the image
- ``probability/<class>``: mono8 probability x 255, for the classes in ``probability_classes``
- ``class_statistics``: std_msgs/Float32MultiArray (num_classes, 2): pixel fraction and mean
  confidence of each class in the frame
- ``class_table`` (JSON std_msgs/String) and ``label_info`` (vision_msgs/LabelInfo where
  available), latched

Health goes to ``/diagnostics`` (see :mod:`tqdm_ros.diagnostics`).

The model stack (open_clip, timm) is imported on configure, not at start, so that an invalid
parameter is reported within a second or two (the parameter table itself imports
tqdm_core.InferenceOptions, and with it torch).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import functools
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Optional, TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32MultiArray, MultiArrayDimension

from tqdm_ros import diagnostics
# camera_output_namespace is also imported from here by the bag tools.
from tqdm_ros.camera_topics import camera_output_namespace, camera_topics  # noqa: F401
from tqdm_ros.camera_topics import CameraTopics
from tqdm_ros.class_table_publisher import ClassTablePublisher
from tqdm_ros.compressed_image import check_compressed_layout, compressed_to_rgb8
from tqdm_ros.frame_buffer import LatestFrameSlots
from tqdm_ros.image_conversion import (
    check_image_layout, image_to_rgb8, ImageConversionError, numpy_to_image)
from tqdm_ros.input_loss import PublisherSequenceTracker
from tqdm_ros.memory import limit_allocator_caches, release_free_memory
# Without them (Humble) the node does not count frames lost before its callback and applies
# run-time parameters in its check.
from tqdm_ros.rclpy_features import MESSAGE_INFO_CALLBACKS, POST_SET_PARAMETER_CALLBACKS
from tqdm_ros.parameters import (
    declare_parameters, NodeParameters, parameter_help, parameter_values, ParameterError,
    read_parameters, RUNTIME_PARAMETERS, SPECS_BY_NAME, undeclared_overrides,
    undeclared_overrides_warning, validate_parameters, validate_value)

if TYPE_CHECKING:
    from tqdm_core import ClassTable

NODE_NAME = 'segmentation_node'
# Throttle period of repeated warnings (bad input, inference errors).
WARNING_PERIOD_S = 5.0
# Longest wait for the worker to finish its current batch on deactivate.
WORKER_JOIN_TIMEOUT_S = 60.0
# With no frame for this long the worker returns the memory inference freed to the system.
IDLE_RELEASE_S = 0.5


def load_predictor(params: NodeParameters):
    """Build the tqdm_core Predictor the parameters describe (`tqdm_core.load_predictor`).

    Raises:
        FileNotFoundError, ValueError, tqdm_core.CheckpointError: missing, corrupt or
            mismatched checkpoint (the preset is checked before the model is built), unknown
            preset, unavailable device.
    """
    import tqdm_core

    return tqdm_core.load_predictor(
        params.checkpoint or None, preset=params.preset or None,
        pretrained=None if params.pretrained == 'none' else params.pretrained,
        options=params.inference_options())


def topic_safe(name: str) -> str:
    """Turn a class name into a topic name token: ``traffic light`` -> ``traffic_light``."""
    return ''.join(c if c.isalnum() else '_' for c in name.lower())


def class_statistics(labels: np.ndarray, confidence: np.ndarray,
                     num_classes: int) -> np.ndarray:
    """Pixel fraction and mean confidence of each class.

    Args:
        labels: (H, W) uint8 class ids, 255 = unlabeled (counted in no class).
        confidence: (H, W) float32 in [0, 1].
        num_classes: K.

    Returns:
        (K, 2) float32: column 0 the fraction of all pixels labelled k, column 1 the mean
        confidence of those pixels (0 for a class with no pixel).
    """
    flat_labels = labels.reshape(-1)  # (H, W) -> (HW,)
    counts = np.bincount(flat_labels, minlength=256)[:num_classes]
    confidence_sums = np.bincount(flat_labels, weights=confidence.reshape(-1),
                                  minlength=256)[:num_classes]
    statistics = np.zeros((num_classes, 2), dtype=np.float32)
    statistics[:, 0] = counts / flat_labels.size
    np.divide(confidence_sums, counts, out=statistics[:, 1], where=counts > 0, casting='unsafe')
    return statistics


def statistics_message(statistics: np.ndarray) -> Float32MultiArray:
    """(K, 2) statistics as a Float32MultiArray with a row-major layout."""
    num_classes = statistics.shape[0]
    msg = Float32MultiArray()
    msg.layout.dim = [
        MultiArrayDimension(label='class', size=num_classes, stride=2 * num_classes),
        MultiArrayDimension(label='pixel_fraction,mean_confidence', size=2, stride=2),
    ]
    msg.data = statistics.reshape(-1).tolist()  # (K, 2) -> (2K,)
    return msg


@dataclass(frozen=True)
class InputDecoder:
    """How the node reads one kind of camera message.

    Attributes:
        msg_type: the subscribed message type.
        check: ``(msg, max_pixels=...)`` -> anything; raises ImageConversionError for a message
            to reject (constant time: it runs in the subscription callback).
        decode: ``(msg, max_pixels=...)`` -> ((H, W, 3) uint8, channel order); raises
            ImageConversionError (runs in the worker).
    """

    msg_type: type
    check: Callable[..., Any]
    decode: Callable[..., tuple[np.ndarray, str]]


RAW_INPUT = InputDecoder(Image, check_image_layout, image_to_rgb8)
COMPRESSED_INPUT = InputDecoder(CompressedImage, check_compressed_layout, compressed_to_rgb8)


@dataclass
class ReceivedFrame:
    """A frame in the buffer: the message and its reception time (monotonic seconds)."""

    message: Image | CompressedImage
    received: float


@dataclass
class DecodedFrame:
    """A frame ready for the model."""

    camera_index: int
    frame: ReceivedFrame
    image: np.ndarray  # (H, W, 3) uint8
    channel_order: str  # 'rgb' or 'bgr'


class CameraOutputs:
    """The publishers of one camera.

    Args:
        node: the lifecycle node.
        namespace: output prefix of the camera.
        qos: QoS of the per-frame outputs.
        class_table: the model's classes.
        probability_class_ids: class ids that get a probability image.
        confidence_threshold: sent with the class table.
    """

    def __init__(self, *, node: LifecycleNode, namespace: str, qos: QoSProfile,
                 class_table: ClassTable, probability_class_ids: tuple[int, ...],
                 confidence_threshold: float) -> None:
        self.publishers = []

        def advertise(msg_type, name):
            publisher = node.create_lifecycle_publisher(msg_type, f'{namespace}/{name}', qos)
            self.publishers.append(publisher)
            return publisher

        self.labels = advertise(Image, 'labels')
        self.confidence = advertise(Image, 'confidence')
        self.confidence_mono8 = advertise(Image, 'confidence_mono8')
        self.color_mask = advertise(Image, 'color_mask')
        self.overlay = advertise(Image, 'overlay')
        self.statistics = advertise(Float32MultiArray, 'class_statistics')
        self.probabilities = {
            class_id: advertise(Image, f'probability/{topic_safe(class_table.names[class_id])}')
            for class_id in probability_class_ids}
        self.class_table = ClassTablePublisher(
            node=node, namespace=namespace, class_table=class_table,
            confidence_threshold=confidence_threshold)

    def wants_probabilities(self) -> bool:
        return any(has_subscribers(p) for p in self.probabilities.values())

    def destroy(self, node: LifecycleNode) -> None:
        for publisher in self.publishers:
            node.destroy_lifecycle_publisher(publisher)
        self.class_table.destroy()


def probability_class_ids(names: tuple[str, ...], class_table: ClassTable) -> tuple[int, ...]:
    """Class ids of the ``probability_classes`` parameter.

    Raises:
        ValueError: a name that is not a class of the model.
    """
    unknown = [name for name in names if name not in class_table.names]
    if unknown:
        raise ValueError(
            f'parameter probability_classes names {unknown}, not classes of the model; '
            f'its classes are {list(class_table.names)}')
    return tuple(class_table.names.index(name) for name in names)


def has_subscribers(publisher) -> bool:
    return publisher.get_subscription_count() > 0


class SegmentationNode(LifecycleNode):
    """Semantic segmentation of one or several cameras with a tqdm model.

    Args:
        predictor_factory: builds the Predictor from the parameters on configure (injectable,
            e.g. to wrap the Predictor in a benchmark or a test).
        **kwargs: passed to rclpy's Node (namespace, context, parameter_overrides, ...).

    Raises:
        ParameterError: an invalid parameter at start.
    """

    def __init__(self, *, predictor_factory: Callable = load_predictor, **kwargs) -> None:
        # Set before Node.__init__: destroy_node() needs them even when the parameters are
        # rejected halfway through construction.
        self._subscriptions_by_camera = []
        self._cameras: list[CameraTopics] = []
        self._decoders: list[InputDecoder] = []
        self._sequence_trackers: list[PublisherSequenceTracker] = []
        self._slots: Optional[LatestFrameSlots] = None
        self._worker: Optional[threading.Thread] = None
        self._stop_worker = threading.Event()
        self._warning_lock = threading.Lock()
        self._last_warning: dict[int, float] = {}
        # Set by the lifecycle shutdown transition: the console script then exits.
        self.finalized = threading.Event()
        super().__init__(NODE_NAME, **kwargs)
        declare_parameters(self)
        self._params = read_parameters(self)
        unknown = undeclared_overrides(self)
        if unknown:
            self.get_logger().warning(undeclared_overrides_warning(unknown))
        # True from the start of configure until cleanup: the parameters are in use.
        self._parameters_in_use = False
        self.add_on_set_parameters_callback(self._check_parameter_update)
        if POST_SET_PARAMETER_CALLBACKS:
            self.add_post_set_parameters_callback(self._apply_runtime_parameters)
        self._predictor_factory = predictor_factory
        self._predictor = None
        self._class_table: Optional[ClassTable] = None
        self._outputs: list[CameraOutputs] = []
        self._health = diagnostics.HealthMonitor(node_name=self.get_fully_qualified_name())
        # Own group: diagnostics keep flowing while a transition (model loading) runs.
        self._diagnostics_group = MutuallyExclusiveCallbackGroup()
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics_timer = self._create_diagnostics_timer()

    @property
    def parameters(self) -> NodeParameters:
        return self._params

    def start(self) -> bool:
        """Configure and activate (the console script's autostart); False on failure."""
        return (self.trigger_configure() == TransitionCallbackReturn.SUCCESS
                and self.trigger_activate() == TransitionCallbackReturn.SUCCESS)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        # rclpy turns an exception of a transition callback into a silent ERROR: report it.
        self._parameters_in_use = True
        try:
            result = self._configure()
        except Exception as error:
            result = self._fail_configure(
                f'could not configure: {type(error).__name__}: {error}\n{traceback.format_exc()}')
        if result != TransitionCallbackReturn.SUCCESS:
            self._release_model()
            self._parameters_in_use = False
            return result
        release_free_memory()  # what loading the checkpoint freed
        return super().on_configure(state)

    def _configure(self) -> TransitionCallbackReturn:
        try:
            self._params = read_parameters(self)
        except ParameterError as error:
            return self._fail_configure(f'cannot configure: {error}')
        params = self._params
        self.destroy_timer(self._diagnostics_timer)
        self._diagnostics_timer = self._create_diagnostics_timer()
        self._cameras = [
            camera_topics(topic, transport=params.input_transport,
                          output_namespace=params.output_namespace)
            for topic in params.input_topics]
        self._health.reset_cameras(
            tuple(self.resolve_topic_name(c.subscribed) for c in self._cameras))
        self._last_warning = {}
        source = params.checkpoint or f'preset {params.preset}, towers {params.pretrained!r}'
        if params.model:
            self.get_logger().warning(
                "parameter 'model' is deprecated and will be removed: set 'preset' instead")
        self._health.set_state(diagnostics.STATE_LOADING, source)
        self.get_logger().info(f'loading model {source} on {params.device}, {params.precision}')
        if not params.checkpoint:
            self.get_logger().warning(
                'no checkpoint given: the segmentation heads start from random weights, the '
                'labels are meaningless; set the checkpoint parameter to a trained model')
        started = time.monotonic()
        try:
            predictor = self._predictor_factory(params)
        except Exception as error:  # any failure must end in a clear log, not a silent ERROR
            return self._fail_configure(f'could not load the model from {source}: {error}')
        class_table = predictor.class_table
        try:
            probability_ids = probability_class_ids(params.probability_classes, class_table)
        except ValueError as error:
            return self._fail_configure(str(error))
        self._predictor, self._class_table = predictor, class_table
        description = {k: str(v) for k, v in predictor.describe().items()}
        self._health.set_model_info(
            {'model': f"{description['preset']} ({source})", 'device': params.device,
             'precision': params.precision, **description, 'source': source})
        output_qos = self._qos(params.output_qos, params.output_qos_depth)
        self._outputs = [
            CameraOutputs(
                node=self, namespace=camera.outputs, qos=output_qos, class_table=class_table,
                probability_class_ids=probability_ids,
                confidence_threshold=params.confidence_threshold)
            for camera in self._cameras]
        self._health.set_state(diagnostics.STATE_INACTIVE)
        self.get_logger().info(
            f'model ready in {time.monotonic() - started:.1f} s: {description}; '
            f'{class_table.num_classes} classes ({class_table.name})')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        params = self._params
        self._slots = LatestFrameSlots(num_cameras=len(self._cameras))
        input_qos = self._qos(params.input_qos, params.input_qos_depth)
        self._decoders = [COMPRESSED_INPUT if c.compressed else RAW_INPUT for c in self._cameras]
        self._sequence_trackers = [PublisherSequenceTracker() for _ in self._cameras]
        # One group per camera: a camera's frames are taken in order (the sequence numbers and
        # the latest-frame slot rely on it), different cameras in parallel.
        self._subscriptions_by_camera = [
            self.create_subscription(
                decoder.msg_type, camera.subscribed, self._image_callback(index),
                input_qos, callback_group=MutuallyExclusiveCallbackGroup())
            for index, (camera, decoder) in enumerate(zip(self._cameras, self._decoders))]
        # A new event per worker: a worker that outlived its deactivation (a frame slower than
        # WORKER_JOIN_TIMEOUT_S) must not be woken again by the next activation.
        self._stop_worker = threading.Event()
        self._worker = threading.Thread(
            target=self._run_worker, args=(self._slots, self._stop_worker),
            name='segmentation_worker', daemon=True)
        self._worker.start()
        self._health.set_state(diagnostics.STATE_WARMING_UP, 'waiting for the first frame')
        self.get_logger().info(
            f'active: segmenting {[c.subscribed for c in self._cameras]}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._health.set_state(diagnostics.STATE_INACTIVE)
        self.get_logger().info('inactive: unsubscribed, worker stopped')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_model()
        self._parameters_in_use = False
        self._health.set_state(diagnostics.STATE_UNCONFIGURED)
        self._health.set_model_info({})
        self.get_logger().info('unconfigured: model released')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._release_model()
        self._parameters_in_use = False
        self._health.set_state(diagnostics.STATE_FINALIZED)
        self._health.set_model_info({})
        self.get_logger().info('finalized: model released')
        self.finalized.set()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._release_model()
        self._parameters_in_use = False
        self._health.set_state(diagnostics.STATE_UNCONFIGURED)
        self._health.set_model_info({})
        return super().on_error(state)

    def destroy_node(self) -> None:
        """Stop the worker before the node's entities go away."""
        self._stop()
        super().destroy_node()

    def _create_diagnostics_timer(self):
        return self.create_timer(self._params.diagnostics_period_s, self._publish_diagnostics,
                                 callback_group=self._diagnostics_group)

    def _check_parameter_update(self, parameters) -> SetParametersResult:
        """Refuse an invalid value, and a change the configured node would not apply."""
        changes = {p.name: p.value for p in parameters if p.name in SPECS_BY_NAME}
        if not changes:
            return SetParametersResult(successful=True)
        current = parameter_values(self)
        try:
            for name, value in changes.items():
                validate_value(SPECS_BY_NAME[name], value)
            validate_parameters({**current, **changes})
        except ParameterError as error:
            return SetParametersResult(successful=False, reason=str(error))
        # A value equal to the current one changes nothing (a `ros2 param load` of a dump).
        needs_configure = sorted(name for name in set(changes) - RUNTIME_PARAMETERS
                                 if changes[name] != current.get(name))
        if needs_configure and self._parameters_in_use:
            names = ', '.join(repr(name) for name in needs_configure)
            return SetParametersResult(successful=False, reason=(
                f'{names} takes effect only at configure, and the node is configured: '
                f'deactivate and clean it up first (ros2 lifecycle set '
                f'{self.get_fully_qualified_name()} deactivate, then cleanup), set it, then '
                f'configure and activate again; applied at once: '
                f'{", ".join(sorted(RUNTIME_PARAMETERS))}'))
        if not POST_SET_PARAMETER_CALLBACKS:  # the only on-set callback: accepting is setting
            self._apply_runtime_parameters(parameters)
        return SetParametersResult(successful=True)

    def _apply_runtime_parameters(self, parameters) -> None:
        """Apply the parameters of RUNTIME_PARAMETERS a configured node accepted."""
        changes = {p.name: validate_value(SPECS_BY_NAME[p.name], p.value)
                   for p in parameters if p.name in RUNTIME_PARAMETERS}
        if not (changes and self._parameters_in_use):
            return
        self._params = replace(self._params, **changes)  # the worker reads max_rate_hz per run
        threshold = changes.get('confidence_threshold')
        if threshold is not None and self._predictor is not None:
            self._predictor.confidence_threshold = threshold
            self._health.update_model_info({'confidence_threshold': str(threshold)})
            for outputs in self._outputs:
                outputs.class_table.publish(threshold)

    def _fail_configure(self, message: str) -> TransitionCallbackReturn:
        self.get_logger().error(message)
        self._health.set_state(diagnostics.STATE_FAILED, message)
        return TransitionCallbackReturn.FAILURE

    @staticmethod
    def _qos(kind: str, depth: int) -> QoSProfile:
        reliability = (ReliabilityPolicy.BEST_EFFORT if kind == 'sensor_data'
                       else ReliabilityPolicy.RELIABLE)
        return QoSProfile(depth=depth, reliability=reliability)

    def _stop(self) -> None:
        for subscription in self._subscriptions_by_camera:
            self.destroy_subscription(subscription)
        self._subscriptions_by_camera = []
        self._stop_worker.set()
        if self._slots is not None:
            self._slots.close()
        if self._worker is not None:
            self._worker.join(WORKER_JOIN_TIMEOUT_S)
            if self._worker.is_alive():
                self.get_logger().error(
                    f'inference worker still busy after {WORKER_JOIN_TIMEOUT_S:.0f} s')
        self._worker, self._slots = None, None

    def _release_model(self) -> None:
        for outputs in self._outputs:
            outputs.destroy(self)
        self._outputs = []
        self._predictor, self._class_table = None, None
        if self._params.device.startswith('cuda'):
            import torch

            torch.cuda.empty_cache()

    def _publish_diagnostics(self) -> None:
        self._diagnostics_publisher.publish(
            self._health.report(self.get_clock().now().to_msg()))

    def _reject(self, camera_index: int, error: Exception) -> None:
        total = self._health.on_bad_input(camera_index, str(error))
        # Throttled per camera: rclpy's throttle is per call site, so one camera's bad stream
        # would hide every other camera's warnings.
        now = time.monotonic()
        with self._warning_lock:
            if now - self._last_warning.get(camera_index, -WARNING_PERIOD_S) < WARNING_PERIOD_S:
                return
            self._last_warning[camera_index] = now
        self.get_logger().warning(
            f'skipping a frame from {self._cameras[camera_index].subscribed}: {error} '
            f'({total} rejected from this camera so far)')

    def _image_callback(self, camera_index: int) -> Callable:
        if MESSAGE_INFO_CALLBACKS:
            return functools.partial(self._on_image, camera_index)
        return lambda msg: self._on_image(camera_index, msg, None)

    def _on_image(self, camera_index: int, msg: Image | CompressedImage,
                  info: Optional[dict]) -> None:
        received = time.monotonic()
        slots = self._slots
        if slots is None:  # a callback racing with deactivate
            return
        self._health.on_received(camera_index)
        # Absent in older rclpy, None where the middleware gives no publisher identity.
        publisher = info.get('publisher_gid') if info else None
        if publisher is not None:
            lost = self._sequence_trackers[camera_index].observe(
                bytes(publisher['data']), info['publication_sequence_number'])
            if lost:
                self._health.on_lost(camera_index, lost)
        try:
            self._decoders[camera_index].check(msg, max_pixels=self._params.max_input_pixels)
        except ImageConversionError as error:
            self._reject(camera_index, error)
            return
        if slots.put(camera_index, ReceivedFrame(message=msg, received=received)):
            self._health.on_dropped(camera_index)

    def _run_worker(self, slots: LatestFrameSlots, stop: threading.Event) -> None:
        next_run = 0.0
        worked_since_release = False
        while not stop.is_set():
            # Rate cap: wait first, then take the frames, so the frames used are the newest.
            if stop.wait(max(0.0, next_run - time.monotonic())):
                break
            ready = slots.take_ready(timeout=IDLE_RELEASE_S)
            if ready:
                max_rate_hz = self._params.max_rate_hz  # settable at run time
                next_run = time.monotonic() + (1.0 / max_rate_hz if max_rate_hz > 0 else 0.0)
                try:
                    self._process(ready)
                except Exception as error:  # the worker must outlive any one frame
                    for camera_index, _ in ready:
                        self._health.on_inference_error(camera_index, str(error))
                    self.get_logger().error(
                        f'processing {len(ready)} frame(s) failed: {error}\n'
                        f'{traceback.format_exc()}', throttle_duration_sec=WARNING_PERIOD_S)
                worked_since_release = True
            elif worked_since_release:
                # The cameras paused: give back what inference freed. Never while frames keep
                # coming, where it would only cost page faults on the next frame.
                release_free_memory()
                worked_since_release = False

    def _process(self, ready: list[tuple[int, ReceivedFrame]]) -> None:
        by_channel_order: dict[str, list[DecodedFrame]] = {}
        for camera_index, frame in ready:
            try:
                image, channel_order = self._decoders[camera_index].decode(
                    frame.message, max_pixels=self._params.max_input_pixels)
            except ImageConversionError as error:
                self._reject(camera_index, error)
                continue
            except Exception as error:  # a decoder's own failure (cv_bridge, OpenCV): bad input
                self._reject(camera_index, ImageConversionError(
                    f'could not decode: {type(error).__name__}: {error}'))
                continue
            by_channel_order.setdefault(channel_order, []).append(
                DecodedFrame(camera_index, frame, image, channel_order))
        # The Predictor batches frames of equal size, up to max_batch_size per forward pass.
        for batch in by_channel_order.values():
            self._infer(batch)

    def _infer(self, batch: list[DecodedFrame]) -> None:
        want_probabilities = any(
            self._outputs[d.camera_index].wants_probabilities() for d in batch)
        started = time.monotonic()
        try:
            predictions = self._predictor.predict_batch(
                [d.image for d in batch], channel_order=batch[0].channel_order,
                return_probabilities=want_probabilities)
        except Exception as error:  # a failing frame must not kill the worker
            for decoded in batch:
                self._health.on_inference_error(decoded.camera_index, str(error))
            self.get_logger().error(
                f'inference failed on a batch of {len(batch)}: {error}',
                throttle_duration_sec=WARNING_PERIOD_S)
            return
        inference_s = time.monotonic() - started
        for decoded, prediction in zip(batch, predictions):
            self._publish(decoded, prediction)
            self._health.on_processed(
                decoded.camera_index, latency_s=time.monotonic() - decoded.frame.received,
                inference_s=inference_s)

    def _publish(self, decoded: DecodedFrame, prediction) -> None:
        from tqdm_core.visualization import colorize_labels, confidence_to_image, overlay

        outputs = self._outputs[decoded.camera_index]
        header = decoded.frame.message.header
        labels, confidence = prediction.labels, prediction.confidence
        if has_subscribers(outputs.labels):
            outputs.labels.publish(numpy_to_image(labels, 'mono8', header=header))
        if has_subscribers(outputs.confidence):
            outputs.confidence.publish(numpy_to_image(confidence, '32FC1', header=header))
        if has_subscribers(outputs.confidence_mono8):
            outputs.confidence_mono8.publish(
                numpy_to_image(confidence_to_image(confidence), 'mono8', header=header))
        want_color, want_overlay = (
            has_subscribers(outputs.color_mask), has_subscribers(outputs.overlay))
        if want_color:
            outputs.color_mask.publish(numpy_to_image(
                colorize_labels(labels, self._class_table), 'rgb8', header=header))
        if want_overlay:
            image_rgb = decoded.image if decoded.channel_order == 'rgb' else np.ascontiguousarray(
                decoded.image[:, :, ::-1])
            blended = overlay(image_rgb, labels, self._class_table, self._params.overlay_alpha)
            outputs.overlay.publish(numpy_to_image(blended, 'rgb8', header=header))
        if want_color or want_overlay:
            self._health.on_visualization(
                decoded.camera_index, color_mask=want_color, overlay=want_overlay)
        if has_subscribers(outputs.statistics):
            outputs.statistics.publish(statistics_message(
                class_statistics(labels, confidence, self._class_table.num_classes)))
        for class_id, publisher in outputs.probabilities.items():
            if prediction.probabilities is not None and has_subscribers(publisher):
                publisher.publish(numpy_to_image(
                    confidence_to_image(prediction.probabilities[class_id]), 'mono8',
                    header=header))


def main(args: Optional[list[str]] = None, *,
         predictor_factory: Callable = load_predictor) -> None:
    """Console script ``segmentation_node``: run the node until SIGINT or SIGTERM.

    Exit codes: 0 after a normal shutdown, 1 when autostart fails to configure or activate
    (missing checkpoint, unknown class, ...), 2 for an invalid parameter.
    """
    arguments = sys.argv[1:] if args is None else list(args)
    if '--ros-args' in arguments:
        arguments = arguments[:arguments.index('--ros-args')]  # the script's own arguments
    if {'-h', '--help'} & set(arguments):  # rclpy would ignore the flag and start the node
        print(parameter_help(NODE_NAME))
        sys.exit(0)
    limit_allocator_caches()  # before any thread starts
    # rclpy's signal handling raises KeyboardInterrupt wherever the main thread happens to be,
    # cleanup included; a flag set by our own handlers gives an orderly shutdown instead.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = SegmentationNode(predictor_factory=predictor_factory)
    except ParameterError as error:
        print(f'{NODE_NAME}: invalid parameter: {error}', file=sys.stderr)
        rclpy.try_shutdown()
        sys.exit(2)
    shutdown_requested = node.finalized  # a lifecycle shutdown ends the process too
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: shutdown_requested.set())
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    spin_thread = threading.Thread(target=executor.spin, name='executor', daemon=True)
    spin_thread.start()
    exit_code = 0
    try:
        if node.parameters.autostart:
            # Transitions run inside the executor, so /diagnostics reports the model loading.
            started = executor.create_task(node.start)
            while not (started.done() or shutdown_requested.wait(0.1)):
                pass
            if started.done() and not started.result():
                print(f'{NODE_NAME}: could not start, see the error above', file=sys.stderr)
                exit_code = 1
        if exit_code == 0:
            shutdown_requested.wait()
    finally:
        executor.shutdown()
        spin_thread.join()
        node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(exit_code)


if __name__ == '__main__':
    main()
