"""The topics of one camera: where its frames come from and where its outputs go.

A camera is named by its image topic, e.g. ``/front/image_raw``. With ``input_transport: raw``
the node reads ``sensor_msgs/Image`` there; with ``compressed`` it reads
``sensor_msgs/CompressedImage`` on ``/front/image_raw/compressed``, the topic image_transport's
compressed plugin publishes. A topic given with the ``/compressed`` suffix is always read as
compressed, so one node can mix raw and compressed cameras. Outputs go under the camera's
namespace either way: ``/front/segmentation/...``.
"""

from dataclasses import dataclass
import posixpath

TRANSPORTS = ('raw', 'compressed')
COMPRESSED_SUFFIX = '/compressed'
# The node's own name, for expanding '~' and '{node}' when topic names are checked before the
# node exists; namespaces do not change whether a name is valid.
_NODE_NAME = 'segmentation_node'


@dataclass(frozen=True)
class CameraTopics:
    """Topics of one camera.

    Attributes:
        camera: the camera's image topic as configured, without a ``/compressed`` suffix.
        subscribed: the topic the node subscribes to.
        compressed: whether ``subscribed`` carries sensor_msgs/CompressedImage.
        outputs: prefix of the camera's output topics.
    """

    camera: str
    subscribed: str
    compressed: bool
    outputs: str


def camera_output_namespace(input_topic: str, output_namespace: str) -> str:
    """Output prefix of a camera: its topic's namespace joined with ``output_namespace``.

    ``/camera/image_raw`` and ``/camera/image_raw/compressed`` -> ``/camera/segmentation``; a
    relative topic gives a relative prefix, resolved in the node's namespace like the input.
    """
    camera = input_topic.removesuffix(COMPRESSED_SUFFIX)
    return posixpath.join(posixpath.dirname(camera), output_namespace)


def camera_topics(input_topic: str, *, transport: str, output_namespace: str) -> CameraTopics:
    """Topics of the camera ``input_topic`` under ``transport`` (``raw`` or ``compressed``)."""
    compressed = transport == 'compressed' or input_topic.endswith(COMPRESSED_SUFFIX)
    camera = input_topic.removesuffix(COMPRESSED_SUFFIX)
    return CameraTopics(
        camera=camera, subscribed=camera + COMPRESSED_SUFFIX if compressed else camera,
        compressed=compressed, outputs=camera_output_namespace(camera, output_namespace))


def topic_name_problem(name: str) -> str:
    """Why ``name`` is not a valid ROS topic name once expanded, or '' when it is valid.

    Relative names, ``~`` and ``{node}`` are accepted, as rclpy resolves them.
    """
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name

    try:
        validate_full_topic_name(expand_topic_name(name, _NODE_NAME, '/'))
    except (InvalidTopicNameException, ValueError) as error:
        # The first line states the rule; rcl appends its source location to substitution errors.
        return str(error).splitlines()[0].split(', at /')[0].rstrip(':')
    return ''
