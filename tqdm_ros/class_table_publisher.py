"""The class table (label id -> name, colour) on latched topics, for late subscribers too.

Two forms: ``vision_msgs/LabelInfo`` on ``label_info`` where vision_msgs is importable (the
contract Nav2's semantic segmentation layer reads), and everywhere a ``std_msgs/String`` holding
JSON on ``class_table`` (:mod:`tqdm_ros.class_table_json`), readable by pip-only users. Both
are reliable + transient_local with depth 1, so a subscriber that joins at any time receives
the current table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from tqdm_ros.class_table_json import class_table_to_json

if TYPE_CHECKING:
    from tqdm_core import ClassTable

try:
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:
    LabelInfo = VisionClass = None

LATCHED_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class ClassTablePublisher:
    """Publishes one class table, latched, under a namespace.

    Args:
        node: the node that owns the publishers.
        namespace: topic prefix, e.g. ``/camera/segmentation``.
        class_table: the model's classes.
        confidence_threshold: the node's threshold, sent in LabelInfo and the JSON.
    """

    def __init__(self, *, node: Node, namespace: str, class_table: ClassTable,
                 confidence_threshold: float) -> None:
        self._node = node
        self._class_table = class_table
        self._json_publisher = node.create_publisher(
            String, f'{namespace}/class_table', LATCHED_QOS)
        self._label_info_publisher = None
        if LabelInfo is not None:
            self._label_info_publisher = node.create_publisher(
                LabelInfo, f'{namespace}/label_info', LATCHED_QOS)
        self.publish(confidence_threshold)

    def publish(self, confidence_threshold: float) -> None:
        """(Re)send the table with ``confidence_threshold``; the latched copy is replaced."""
        self._json_publisher.publish(String(
            data=class_table_to_json(self._class_table, confidence_threshold=confidence_threshold)))
        if self._label_info_publisher is not None:
            info = LabelInfo(threshold=float(confidence_threshold))
            info.header.stamp = self._node.get_clock().now().to_msg()
            info.class_map = [VisionClass(class_id=i, class_name=n)
                              for i, n in enumerate(self._class_table.names)]
            self._label_info_publisher.publish(info)

    def destroy(self) -> None:
        """Remove the topics (on cleanup, when the model and its classes go away)."""
        self._node.destroy_publisher(self._json_publisher)
        if self._label_info_publisher is not None:
            self._node.destroy_publisher(self._label_info_publisher)
