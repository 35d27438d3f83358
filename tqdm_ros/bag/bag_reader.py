"""Reading rosbag2 bags (sqlite3 or mcap storage) with `rosbags`, no ROS install needed.

Everything the bag tools read goes through here: opening a bag with clear errors for a missing
or truncated one, a summary of its topics, the class table of its ground truth, and the pairs of
camera frames and ground-truth labels matched by header stamp that evaluation consumes.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass
import functools
import importlib
import pathlib
import re
import sqlite3
import struct

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection, QosDurability
from rosbags.rosbag2 import ReaderError
from rosbags.typesys import get_types_from_msg, get_typestore, Stores, TypesysError
from rosbags.typesys.store import Typestore
from tqdm_core.classes import ClassTable
from tqdm_core.staged_output import staged_path

from tqdm_ros.camera_topics import COMPRESSED_SUFFIX
from tqdm_ros.class_table_json import class_table_from_json, ClassTableFormatError
from tqdm_ros.compressed_image import compressed_to_rgb8
from tqdm_ros.image_conversion import image_to_numpy, image_to_rgb8, ImageConversionError

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE_TYPE = 'sensor_msgs/msg/CompressedImage'
CAMERA_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
STRING_TYPE = 'std_msgs/msg/String'
# Encodings of ground-truth images: one uint8 class id per pixel. 8UC1 is the generic name of
# mono8's layout that many label publishers use.
LABEL_ENCODINGS = ('mono8', '8UC1')

# Every way rosbags fails on a bad bag; sqlite3 and struct errors come from truncated files.
_READ_ERRORS = (AnyReaderError, ReaderError, TypesysError, sqlite3.DatabaseError, EOFError,
                KeyError, ValueError, AssertionError)


class BagError(ValueError):
    """A bag that cannot be read or lacks what a tool needs; the message says what to do."""


def typestore_for(msgtypes: Iterable[str] = ()) -> Typestore:
    """Return a typestore with the Kilted messages plus any installed message type not in it.

    Kilted definitions give the same RIHS01 type hashes as the pip Kilted messages, so `ros2 bag`
    and rclpy agree with the bags written here. A type that `rosbags` does not ship (a custom
    message) is read from the installed ``share/<package>/msg/<Name>.msg`` with its dependencies.

    Args:
        msgtypes: full type names such as ``sensor_msgs/msg/Image`` that must be known.

    Raises:
        BagError: a type is neither in the Kilted store nor installed.
    """
    store = get_typestore(Stores.ROS2_KILTED)
    pending = [t for t in msgtypes if t not in store.fielddefs]
    while pending:
        msgtype = pending.pop()
        if msgtype in store.fielddefs:
            continue
        typs = get_types_from_msg(_installed_msg_text(msgtype), msgtype)
        store.register(typs)
        pending.extend(name for name in _referenced_types(typs[msgtype])
                       if name not in store.fielddefs)
    return store


def _installed_msg_text(msgtype: str) -> str:
    package, _, name = msgtype.split('/')
    try:
        from ament_index_python.packages import get_package_share_directory
        share = pathlib.Path(get_package_share_directory(package))
        return (share / 'msg' / f'{name}.msg').read_text()
    except (ImportError, LookupError, OSError):
        raise BagError(
            f"message type '{msgtype}' is not known to rosbags and its definition "
            f"share/{package}/msg/{name}.msg is not installed; install the '{package}' "
            'message package or leave this topic out') from None


def _referenced_types(fielddef: object) -> Iterator[str]:
    """Yield every message type name nested in a rosbags field definition."""
    if isinstance(fielddef, str):
        if re.fullmatch(r'\w+/msg/\w+', fielddef):
            yield fielddef
    elif isinstance(fielddef, (tuple, list)):
        for item in fielddef:
            yield from _referenced_types(item)


@contextmanager
def staged_bag_path(output: pathlib.Path) -> Iterator[pathlib.Path]:
    """Yield a staging path for a new bag, moved to ``output`` only if the block succeeds.

    Raises:
        FileExistsError: ``output`` exists already.
        ValueError: ``output`` ends in '.bag'.
    """
    if output.suffix == '.bag':
        raise ValueError(f"'{output}': a '.bag' name marks a ROS 1 bag file to rosbags readers; "
                         f"name the rosbag2 directory without it, e.g. "
                         f"'{output.with_suffix('')}'")
    with staged_path(output) as staging:
        yield staging


@contextmanager
def open_bag(path: str | pathlib.Path) -> Iterator[AnyReader]:
    """Open a rosbag2 bag directory for reading, turning rosbags errors into clear ones.

    Raises:
        FileNotFoundError: nothing at ``path``.
        BagError: not a rosbag2 directory, or its metadata or storage file is damaged.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no bag at '{path}': expected a rosbag2 directory holding metadata.yaml; "
            "make one with 'tqdm-bag make' or record one with 'tqdm-bag record'")
    if path.is_dir() and path.suffix == '.bag':
        raise BagError(f"'{path}': rosbags reads a path ending in '.bag' as a ROS 1 bag file; "
                       f"rename the rosbag2 directory, e.g. to '{path.with_suffix('')}'")
    if not (path / 'metadata.yaml').is_file():
        raise BagError(
            f"'{path}' is not a rosbag2 bag: expected a directory holding metadata.yaml and a "
            '.db3 or .mcap file; a bag left by an interrupted recorder has no metadata.yaml')
    try:
        reader = AnyReader([path], default_typestore=typestore_for())
        reader.open()
    except _READ_ERRORS as err:
        raise BagError(f"cannot open bag '{path}': {err}; the bag is damaged or truncated, "
                       'record or make it again') from None
    try:
        yield reader
    finally:
        reader.close()


def iter_messages(reader: AnyReader, connections: list[Connection], *,
                  start: int | None = None) -> Iterator[tuple[Connection, int, bytes]]:
    """Yield (connection, log time in ns, raw CDR bytes) in log-time order with clear errors."""
    try:
        yield from reader.messages(connections=connections, start=start)
    except _READ_ERRORS as err:
        raise BagError(f"bag '{reader.paths[0]}' is damaged or truncated: {err}; "
                       'record or make it again') from None


def connections_for(reader: AnyReader, topics: Iterable[str]) -> list[Connection]:
    """Return the connections of the given topics.

    Raises:
        BagError: a topic is not in the bag (the message lists the topics that are).
    """
    topics = list(topics)
    available = sorted({c.topic for c in reader.connections})
    missing = [t for t in topics if t not in available]
    if missing:
        raise BagError(f"bag '{reader.paths[0]}' has no topic {', '.join(missing)}; "
                       f"its topics are: {', '.join(available) or '(none)'}")
    return [c for c in reader.connections if c.topic in topics]


def resolve_camera_topic(reader: AnyReader, topic: str) -> str:
    """Return the bag's camera topic for ``topic``: itself, or its ``/compressed`` sibling.

    A recording made with image_transport's compressed plugin holds
    ``/camera/image_raw/compressed`` (sensor_msgs/CompressedImage) where a raw one holds
    ``/camera/image_raw``; naming the camera finds either. A topic that is in the bag is
    returned as given.

    Raises:
        BagError: neither is in the bag (the message lists the topics that are).
    """
    available = {c.topic for c in reader.connections}
    if topic in available:
        return topic
    if topic + COMPRESSED_SUFFIX in available:
        return topic + COMPRESSED_SUFFIX
    raise BagError(f"bag '{reader.paths[0]}' has no camera topic {topic} (nor "
                   f"{topic}{COMPRESSED_SUFFIX}); its topics are: "
                   f"{', '.join(sorted(available)) or '(none)'}")


def is_latched(connection: Connection) -> bool:
    """Tell whether every recorded publisher offered transient-local durability (latched)."""
    profiles = getattr(connection.ext, 'offered_qos_profiles', [])
    return bool(profiles) and all(
        p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles)


@dataclass(frozen=True)
class TopicSummary:
    """One topic of a bag.

    Attributes:
        name: topic name.
        msgtype: full message type, e.g. ``sensor_msgs/msg/Image``.
        message_count: messages recorded on the topic.
        latched: every recorded publisher was transient-local.
    """

    name: str
    msgtype: str
    message_count: int
    latched: bool


@dataclass(frozen=True)
class BagSummary:
    """What `tqdm-bag info` shows.

    Attributes:
        path: the bag directory.
        storage: ``sqlite3`` or ``mcap``.
        start_ns: log time of the first message, ns since the epoch.
        end_ns: log time of the last message, ns since the epoch.
        message_count: messages over all topics.
        size_bytes: bytes of all files in the bag directory.
        topics: per-topic summaries sorted by name.
    """

    path: pathlib.Path
    storage: str
    start_ns: int
    end_ns: int
    message_count: int
    size_bytes: int
    topics: tuple[TopicSummary, ...]

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) * 1e-9


def summarize_bag(path: str | pathlib.Path) -> BagSummary:
    """Read the metadata and connections of a bag into a `BagSummary`."""
    path = pathlib.Path(path)
    with open_bag(path) as reader:
        by_topic: dict[str, list[Connection]] = {}
        for connection in reader.connections:
            by_topic.setdefault(connection.topic, []).append(connection)
        topics = tuple(
            TopicSummary(name=name, msgtype=conns[0].msgtype,
                         message_count=sum(c.msgcount for c in conns),
                         latched=all(is_latched(c) for c in conns))
            for name, conns in sorted(by_topic.items()))
        storage = 'mcap' if any(p.suffix == '.mcap' for p in path.iterdir()) else 'sqlite3'
        count = reader.message_count
        # rosbags reports end_time one ns past the last message.
        start, end = (reader.start_time, reader.end_time - 1) if count else (0, 0)
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return BagSummary(path=path, storage=storage, start_ns=start, end_ns=end,
                      message_count=count, size_bytes=size, topics=topics)


def stamp_to_ns(stamp: object) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time`` (rosbags or rclpy message)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def cdr_header_stamp_ns(raw: bytes) -> int:
    """Header stamp of a serialized message whose first field is a ``std_msgs/Header``.

    CDR: a 4-byte encapsulation header (byte 1 is 1 for little endian, 0 for big endian), then
    ``stamp.sec`` (int32) and ``stamp.nanosec`` (uint32). Reading them avoids deserializing the
    camera image just to learn its stamp.
    """
    order = '<' if raw[1] & 1 else '>'
    sec, nanosec = struct.unpack_from(f'{order}iI', raw, 4)
    return sec * 1_000_000_000 + nanosec


def image_to_array(msg: object) -> np.ndarray:
    """Decode a camera frame of a bag into an RGB array.

    The node's decoders (`tqdm_ros.image_conversion`, `tqdm_ros.compressed_image`) do the work,
    so bags and live topics are read the same way (``step`` padding, byte order, JPEG and PNG,
    the same checks).

    Args:
        msg: a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` (rosbags or rclpy).

    Returns:
        (H, W, 3) uint8 RGB (BGR reordered, alpha dropped, mono and float images expanded as
        the node does).

    Raises:
        BagError: a malformed message (unsupported encoding, ``step`` or data length wrong, a
            compressed payload that is not a complete JPEG or PNG).
    """
    compressed = hasattr(msg, 'format')
    try:
        if compressed:
            image, channel_order = compressed_to_rgb8(msg)
        else:
            image, channel_order = image_to_rgb8(msg)
    except ImageConversionError as err:
        kind = f'compressed ({msg.format})' if compressed else msg.encoding
        raise BagError(f'cannot decode {kind} image of the bag: {err}') from None
    return np.ascontiguousarray(image[:, :, ::-1]) if channel_order == 'bgr' else image


def label_to_array(msg: object, topic: str) -> np.ndarray:
    """Decode a ground-truth image of a bag: one class id per pixel.

    Args:
        msg: a rosbags ``sensor_msgs/Image`` in one of `LABEL_ENCODINGS`.
        topic: its topic, for error messages.

    Returns:
        (H, W) uint8 class ids.

    Raises:
        BagError: another encoding, or a malformed message (``step`` or data length wrong).
    """
    if msg.encoding not in LABEL_ENCODINGS:
        raise BagError(f"label topic '{topic}' carries {msg.encoding} images; expected class "
                       f"ids in {' or '.join(LABEL_ENCODINGS)}")
    try:
        # 8UC1 has mono8's layout. The shared decoder names only mono8: it is also the node's
        # camera decoder, whose encodings are the camera ones.
        return image_to_numpy(dataclasses.replace(msg, encoding='mono8'))
    except ImageConversionError as err:
        raise BagError(f"cannot decode the {msg.encoding} label image of topic '{topic}': "
                       f'{err}') from None


def read_class_table(reader: AnyReader, topic: str) -> ClassTable:
    """Return the class table stored on a ``std_msgs/String`` JSON topic (its last message)."""
    connections = connections_for(reader, [topic])
    text = None
    for connection, _, raw in iter_messages(reader, connections):
        text = reader.deserialize(raw, connection.msgtype).data
    if text is None:
        raise BagError(f"topic '{topic}' of bag '{reader.paths[0]}' holds no message")
    try:
        return class_table_from_json(text)
    except ClassTableFormatError as err:
        raise BagError(f"topic '{topic}' of bag '{reader.paths[0]}': {err}") from None


@dataclass(frozen=True)
class LabeledFrame:
    """A camera frame and its ground truth, paired by header stamp.

    Attributes:
        stamp_ns: header stamp of the image (and of its label), ns.
        frame_id: header frame_id of the image.
        image: (H, W, 3) uint8 RGB.
        label: (H, W) uint8 class ids, 255 = ignore; None when the bag has no label topic.
    """

    stamp_ns: int
    frame_id: str
    image: np.ndarray
    label: np.ndarray | None


def iter_labeled_frames(reader: AnyReader, *, image_topic: str,
                        label_topic: str | None = None) -> Iterator[LabeledFrame]:
    """Yield camera frames with their ground truth, matched by header stamp, in log-time order.

    The camera topic holds sensor_msgs/Image or CompressedImage (JPEG, PNG); the ground truth
    sensor_msgs/Image mono8 or 8UC1. A frame is yielded as soon as both its image and its label
    have been read, so memory holds only the few messages whose partner is still ahead in the
    bag. A frame without a partner is not yielded; callers compare the frames received with the
    topic message counts.

    Raises:
        BagError: a topic is missing, or a label differs in size from its image.
    """
    topics = [image_topic] + ([label_topic] if label_topic else [])
    connections = connections_for(reader, topics)
    for connection in connections:
        expected = CAMERA_TYPES if connection.topic == image_topic else (IMAGE_TYPE,)
        if connection.msgtype not in expected:
            raise BagError(f"topic '{connection.topic}' has type {connection.msgtype}, "
                           f"expected {' or '.join(expected)}")
    # Only camera frames with ground truth are decoded and kept: the label stamps are read first
    # from the raw messages, so frames without labels (a 10 Hz camera, 1 Hz ground truth) cost
    # neither decoding nor memory.
    labelled = ({cdr_header_stamp_ns(raw) for connection, _, raw in iter_messages(
        reader, [c for c in connections if c.topic == label_topic])} if label_topic else None)
    images: dict[int, tuple[str, np.ndarray]] = {}
    labels: dict[int, np.ndarray] = {}
    for connection, _, raw in iter_messages(reader, connections):
        if (labelled is not None and connection.topic == image_topic
                and cdr_header_stamp_ns(raw) not in labelled):
            continue
        msg = reader.deserialize(raw, connection.msgtype)
        stamp = stamp_to_ns(msg.header.stamp)
        if connection.topic == image_topic:
            images[stamp] = (msg.header.frame_id, image_to_array(msg))
        else:
            labels[stamp] = label_to_array(msg, label_topic)
        if label_topic is None:
            frame_id, image = images.pop(stamp)
            yield LabeledFrame(stamp_ns=stamp, frame_id=frame_id, image=image, label=None)
        elif stamp in images and stamp in labels:
            frame_id, image = images.pop(stamp)
            label = labels.pop(stamp)
            if label.shape != image.shape[:2]:
                raise BagError(
                    f'ground truth at stamp {stamp} ns is {label.shape[1]}x{label.shape[0]} but '
                    f'its image is {image.shape[1]}x{image.shape[0]}; labels must have the '
                    'camera resolution')
            yield LabeledFrame(stamp_ns=stamp, frame_id=frame_id, image=image, label=label)


@functools.lru_cache(maxsize=None)
def message_class(msgtype: str) -> type:
    """Import the rclpy message class of a full type name such as ``sensor_msgs/msg/Image``."""
    package, kind, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{package}.{kind}'), name)
    except (ImportError, AttributeError):
        raise BagError(f"message type '{msgtype}' is not installed for rclpy; install the "
                       f"'{package}' package (pip: ros-{package.replace('_', '-')}) or leave "
                       'the topic out') from None
