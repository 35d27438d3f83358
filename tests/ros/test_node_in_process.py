"""The segmentation node in the test process: failures it must report, its parameter services,
run-time parameter changes, and frames lost before its callback.

The node runs in its own rclpy context with an executor the test spins, so a test can hold the
node's callbacks back while frames pile up in its input queue. A RosClient (its own context and
spinning thread) plays the camera and calls the node's services, as another process would.
"""

import contextlib
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters, ListParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from tests.ros.ros_harness import image_message, MessageLog, RosClient, stamp_ns
from tqdm_ros.image_conversion import check_image_layout, image_to_rgb8
from tqdm_ros.parameters import PARAMETER_SPECS, RUNTIME_PARAMETERS
from tqdm_ros.segmentation_node import SegmentationNode

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TIMEOUT_S = 60.0
FRAME = np.random.default_rng(11).integers(0, 256, (48, 64, 3), dtype=np.uint8)



class SpunNode:
    """A SegmentationNode in its own context; the test decides when its executor spins."""

    def __init__(self, *ros_args: str, **node_kwargs) -> None:
        self.context = rclpy.Context()
        rclpy.init(args=['test', '--ros-args', *ros_args], context=self.context)
        self.node = SegmentationNode(context=self.context, **node_kwargs)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, condition, what: str, timeout: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f'{what}: not reached within {timeout:.0f} s')
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@contextlib.contextmanager
def spun_node(*ros_args: str, **node_kwargs):
    spun = SpunNode(*ros_args, **node_kwargs)
    try:
        yield spun
    finally:
        spun.close()


@contextlib.contextmanager
def client_and_node(*ros_args: str, **node_kwargs):
    """A node spinning in a background thread, and a client in another context."""
    with spun_node(*ros_args, **node_kwargs) as spun:
        stop = threading.Event()

        def spin() -> None:
            while not stop.is_set():
                spun.executor.spin_once(timeout_sec=0.05)

        spinner = threading.Thread(target=spin)
        spinner.start()
        client = RosClient(name='in_process_test_client')
        try:
            yield spun.node, client
        finally:
            client.close()
            stop.set()
            spinner.join(10.0)


def test_an_exception_inside_configure_is_logged_with_its_reason(ros_domain, capfd):
    """rclpy turns an exception of on_configure into a silent ERROR transition."""
    def factory(parameters):
        return object()  # no class_table: configure fails after the model 'loaded'

    with spun_node('-p', 'autostart:=false', predictor_factory=factory) as spun:
        assert spun.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert spun.node.trigger_configure() == TransitionCallbackReturn.FAILURE  # retryable
    logged = capfd.readouterr().err
    assert ("could not configure: AttributeError: 'object' object has no attribute "
            "'class_table'") in logged
    assert 'Traceback' in logged  # where it happened, for a bug report


def test_get_parameters_answers_for_every_parameter(ros_domain):
    """ros2 param dump asks for all listed names at once; an unset one made rclpy answer []."""
    with client_and_node('-p', 'autostart:=false') as (node, client):
        name = node.get_fully_qualified_name()
        listed = client.call(ListParameters, f'{name}/list_parameters',
                             ListParameters.Request()).result.names
        assert {spec.name for spec in PARAMETER_SPECS} <= set(listed)
        answer = client.call(GetParameters, f'{name}/get_parameters',
                             GetParameters.Request(names=listed))
        assert len(answer.values) == len(listed)
        values = dict(zip(listed, answer.values))
        assert values['probability_classes'].type == ParameterType.PARAMETER_STRING_ARRAY
        assert list(values['probability_classes'].string_array_value) == []


def set_parameter(node, name: str, value):
    return node.set_parameters([Parameter(name, value=value)])[0]


def test_parameters_read_on_configure_are_refused_while_configured(ros_domain):
    with spun_node('-p', 'autostart:=false') as spun:
        node = spun.node
        invalid = set_parameter(node, 'device', 'gpu')
        assert not invalid.successful and "'device'" in invalid.reason
        assert set_parameter(node, 'input_transport', 'compressed').successful  # unconfigured
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        refused = set_parameter(node, 'inference_mode', 'slide')
        assert not refused.successful
        assert "'inference_mode' takes effect only at configure, and the node is configured" in (
            refused.reason)
        assert f'ros2 lifecycle set {node.get_fully_qualified_name()} deactivate' in (
            refused.reason)
        assert node.get_parameter('inference_mode').value == 'whole'
        # The value it already has: accepted (a `ros2 param load` of a dump sets every one).
        assert set_parameter(node, 'inference_mode', 'whole').successful
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert set_parameter(node, 'inference_mode', 'slide').successful


def test_runtime_parameters_apply_at_once(ros_domain):
    """overlay_alpha, max_rate_hz and confidence_threshold apply to a configured node; a new
    threshold reaches the Predictor, the latched class tables and the diagnostics."""
    from std_msgs.msg import String

    from tqdm_ros.class_table_publisher import LATCHED_QOS

    assert RUNTIME_PARAMETERS == {'overlay_alpha', 'max_rate_hz', 'confidence_threshold'}
    with spun_node('-p', 'autostart:=false') as spun:
        node = spun.node
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        tables = MessageLog()
        watcher = rclpy.create_node('class_table_watcher', context=spun.context)
        spun.executor.add_node(watcher)
        watcher.create_subscription(String, '/camera/segmentation/class_table', tables,
                                    LATCHED_QOS)
        spun.spin_until(lambda: tables.messages, 'latched class table')
        assert '"confidence_threshold": 0.0' in tables.messages[-1].data
        assert set_parameter(node, 'overlay_alpha', 0.25).successful
        assert set_parameter(node, 'max_rate_hz', 5.0).successful
        assert set_parameter(node, 'confidence_threshold', 0.4).successful
        assert (node.parameters.overlay_alpha, node.parameters.max_rate_hz) == (0.25, 5.0)
        assert node._predictor.confidence_threshold == 0.4
        spun.spin_until(lambda: '"confidence_threshold": 0.4' in tables.messages[-1].data,
                        'class table re-sent with the new threshold')
        model_status = node._health.report(node.get_clock().now().to_msg()).status[0]
        assert {kv.key: kv.value for kv in model_status.values}['confidence_threshold'] == '0.4'
        late = MessageLog()  # a late subscriber gets the new table only
        watcher.create_subscription(String, '/camera/segmentation/class_table', late,
                                    LATCHED_QOS)
        spun.spin_until(lambda: late.messages, 'late subscriber served')
        assert len(late.messages) == 1 and '"confidence_threshold": 0.4' in late.messages[0].data


def test_lifecycle_shutdown_finalizes_the_diagnostics(ros_domain):
    with spun_node('-p', 'autostart:=false') as spun:
        node = spun.node
        assert node.start()
        assert not node.finalized.is_set()
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        assert node.finalized.is_set()  # the console script exits on it
        model, camera = node._health.report(node.get_clock().now().to_msg()).status
        assert (model.message, camera.message) == ('finalized', 'finalized')
        assert 'preset' not in {kv.key for kv in model.values}


def test_bad_input_warnings_are_throttled_per_camera(ros_domain, capfd):
    """rclpy throttles per call site: a bad frame from a second camera was never logged."""
    topics = ['/left/image_raw', '/right/image_raw']
    with spun_node('-p', f'input_topics:={topics}', '-p', 'input_qos:=reliable',
                   '-p', 'diagnostics_period_s:=0.1') as spun:
        node = spun.node
        assert node.start()
        diagnostics = MessageLog()
        node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics, 50)
        client = RosClient(name='two_bad_cameras')
        try:
            bad = image_message(FRAME, 'rgb8', stamp_ns=1, frame_id='c')
            bad.encoding = 'nv21'
            publishers = {}
            for topic in topics + topics[:1]:  # the left camera's second one is throttled
                publisher = publishers.get(topic) or client.node.create_publisher(
                    Image, topic, RELIABLE)
                publishers[topic] = publisher
                spun.spin_until(lambda: publisher.get_subscription_count() > 0, 'matched')
                count = int(camera_status_values(diagnostics, topic).get('bad_inputs', 0))
                publisher.publish(bad)
                spun.spin_until(
                    lambda: int(camera_status_values(diagnostics, topic).get('bad_inputs', 0))
                    == count + 1, f'{topic} rejection counted')
        finally:
            client.close()
    logged = capfd.readouterr().err
    for topic in topics:
        assert logged.count(f'skipping a frame from {topic}') == 1  # warned, then throttled


def test_frames_lost_in_the_input_queue_are_counted(ros_domain):
    """Five frames reach the node's one-frame input queue while its executor does not spin: it
    sees only the last, and the four it never saw are counted from the sequence numbers."""
    with spun_node('-p', "input_topics:=['/lost/camera/image_raw']", '-p',
                   'input_qos:=reliable', '-p', 'diagnostics_period_s:=0.1') as spun:
        node = spun.node
        assert node.start()
        watcher = rclpy.create_node('watcher', context=spun.context)
        spun.executor.add_node(watcher)
        labels, diagnostics = MessageLog(), MessageLog()
        watcher.create_subscription(Image, '/lost/camera/segmentation/labels', labels, RELIABLE)
        watcher.create_subscription(DiagnosticArray, '/diagnostics', diagnostics, 50)
        client = RosClient(name='lost_frames_camera')
        try:
            publisher = client.node.create_publisher(Image, '/lost/camera/image_raw', RELIABLE)

            def frame(stamp: int) -> Image:
                return image_message(FRAME, 'rgb8', stamp_ns=stamp * 10 ** 9, frame_id='c')

            spun.spin_until(lambda: publisher.get_subscription_count() > 0, 'matched')
            publisher.publish(frame(1))
            spun.spin_until(lambda: labels.messages, 'labels of the first frame')
            for stamp in range(2, 7):
                publisher.publish(frame(stamp))
            time.sleep(1.0)  # delivered into the node's input queue, which keeps the newest
            spun.spin_until(lambda: any(stamp_ns(m) == 6 * 10 ** 9 for m in labels.messages),
                            'labels of the last frame')

            def camera_values():
                for array in reversed(diagnostics.messages):
                    for status in array.status:
                        if status.name.endswith('/lost/camera/image_raw'):
                            return {kv.key: kv.value for kv in status.values}
                return {}

            spun.spin_until(lambda: camera_values().get('processed') == '2', 'diagnostics')
            values = camera_values()
            assert (values['received'], values['lost_frames'], values['dropped_frames']) == (
                '2', '4', '0')
            assert [stamp_ns(m) for m in labels.messages] == [10 ** 9, 6 * 10 ** 9]
        finally:
            client.close()


def camera_status_values(diagnostics: MessageLog, topic: str) -> dict:
    for array in reversed(diagnostics.messages):
        for status in array.status:
            if status.name.endswith(topic):
                return {kv.key: kv.value for kv in status.values}
    return {}


def publish_frames_one_by_one(spun: SpunNode, topic: str, count: int, processed) -> list:
    """Publish `count` frames on `topic`, each after the node finished the previous one
    (`processed()` counts finished frames); returns the stamps of the labels published."""
    watcher = rclpy.create_node('watcher', context=spun.context)
    spun.executor.add_node(watcher)
    labels = MessageLog()
    watcher.create_subscription(Image, topic.replace('image_raw', 'segmentation/labels'), labels,
                                RELIABLE)
    client = RosClient(name='one_by_one_camera')
    try:
        publisher = client.node.create_publisher(Image, topic, RELIABLE)
        spun.spin_until(lambda: publisher.get_subscription_count() > 0, 'matched')
        for stamp in range(1, count + 1):
            publisher.publish(image_message(FRAME, 'rgb8', stamp_ns=stamp * 10 ** 9,
                                            frame_id='c'))
            spun.spin_until(lambda: processed() >= stamp, f'frame {stamp} handled')
        return [stamp_ns(m) // 10 ** 9 for m in labels.messages]
    finally:
        client.close()


def test_the_worker_outlives_a_failing_decoder_and_publisher(ros_domain, monkeypatch):
    """Bad input never kills the node: an unexpected decoder exception (cv_bridge, OpenCV) is
    a rejected frame, an exception while publishing an inference error, and the next frame is
    segmented as usual."""
    from tqdm_ros import segmentation_node

    calls = {'decode': 0, 'publish': 0}

    def decode_failing_once(msg, **kwargs):
        calls['decode'] += 1
        if calls['decode'] == 1:
            raise RuntimeError('decoder bug')
        return image_to_rgb8(msg, **kwargs)

    monkeypatch.setattr(segmentation_node, 'RAW_INPUT', segmentation_node.InputDecoder(
        Image, check_image_layout, decode_failing_once))
    topic = '/failing/camera/image_raw'
    with spun_node('-p', f"input_topics:=['{topic}']", '-p', 'input_qos:=reliable',
                   '-p', 'diagnostics_period_s:=0.1') as spun:
        node = spun.node
        assert node.start()
        publish = node._publish

        def publish_failing_once(decoded, prediction):
            calls['publish'] += 1
            if calls['publish'] == 1:
                raise RuntimeError('publisher bug')
            publish(decoded, prediction)

        node._publish = publish_failing_once
        diagnostics = MessageLog()
        node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics, 50)

        def handled() -> int:
            values = camera_status_values(diagnostics, topic)
            return sum(int(values.get(key, 0))
                       for key in ('bad_inputs', 'inference_errors', 'processed'))

        published = publish_frames_one_by_one(spun, topic, 3, handled)
        values = camera_status_values(diagnostics, topic)
        assert (values['bad_inputs'], values['inference_errors'], values['processed']) == (
            '1', '1', '1')
        assert published == [3]
        assert node._worker.is_alive()


def test_without_message_info_and_post_set_callbacks(ros_domain, monkeypatch):
    """Humble's rclpy: subscription callbacks get the message only, and there are no post-set
    parameter callbacks. Frames are still segmented and run-time parameters still applied."""
    from tqdm_ros import segmentation_node

    monkeypatch.setattr(segmentation_node, 'MESSAGE_INFO_CALLBACKS', False)
    monkeypatch.setattr(segmentation_node, 'POST_SET_PARAMETER_CALLBACKS', False)
    topic = '/humble/camera/image_raw'
    with spun_node('-p', f"input_topics:=['{topic}']", '-p', 'input_qos:=reliable',
                   '-p', 'diagnostics_period_s:=0.1') as spun:
        node = spun.node
        assert node.start()
        assert set_parameter(node, 'overlay_alpha', 0.25).successful
        assert node.parameters.overlay_alpha == 0.25
        refused = set_parameter(node, 'overlay_alpha', 7.0)
        assert not refused.successful and node.parameters.overlay_alpha == 0.25
        diagnostics = MessageLog()
        node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics, 50)
        published = publish_frames_one_by_one(
            spun, topic, 2,
            lambda: int(camera_status_values(diagnostics, topic).get('processed', 0)))
        assert published == [1, 2]
