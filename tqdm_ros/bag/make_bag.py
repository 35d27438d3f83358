"""Build a rosbag2 bag from an image folder and an optional ground-truth label folder.

The bag looks like a camera recording: ``sensor_msgs/Image`` rgb8 frames (or, with
``compression``, ``sensor_msgs/CompressedImage`` JPEG or PNG frames on ``<image_topic>/compressed``
as image_transport's compressed plugin records them) at a steady rate with the small stamp jitter
of a real driver, each logged a few milliseconds after its header stamp as
``ros2 bag record`` would; a ``mono8`` ground-truth topic with the same stamps and frame_id; and
the class table of the ground truth as JSON on a latched ``std_msgs/String`` topic.

Layouts: CamVid (``<root>/<split>`` + ``<root>/<split>annot``, label 11 = void), Cityscapes
(``leftImg8bit/<split>/<city>`` + ``gtFine/<split>/<city>``, label ids mapped to the 19 train ids),
or two plain folders whose files are matched by stem.
"""
from __future__ import annotations

from dataclasses import dataclass
import pathlib
import time

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm
from tqdm_core.classes import CAMVID_11, CITYSCAPES_19, ClassTable, get_class_table, IGNORE_INDEX
from tqdm_core.data.base import read_image

from tqdm_ros.bag.bag_reader import COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, staged_bag_path
from tqdm_ros.bag.bag_reader import STRING_TYPE, typestore_for
from tqdm_ros.camera_topics import COMPRESSED_SUFFIX
from tqdm_ros.class_table_json import (
    class_table_from_json, class_table_to_json, ClassTableFormatError)
from tqdm_ros.compressed_image import CODECS, compress_rgb8

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.tif', '.tiff')
STORAGES = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
BAG_VERSION = 9  # rosbag2 metadata of Jazzy and Kilted (type hashes in the metadata)

# Cityscapes label ids (gtFine *_labelIds.png) -> the 19 train ids; every other id is ignored.
CITYSCAPES_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CAMVID_VOID = 11  # SegNet CamVid annotations mark unlabeled pixels with 11


def _qos(*, reliable: bool, latched: bool, depth: int) -> Qos:
    """Describe the QoS a publisher offered, as rosbag2 metadata stores it."""
    never = QosTime(0x7FFFFFFF, 0xFFFFFFFF)  # rmw's "infinite" duration
    return Qos(QosHistory.KEEP_LAST, depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
               never, never, QosLiveliness.AUTOMATIC, never, False)


CAMERA_QOS = _qos(reliable=True, latched=False, depth=10)
LATCHED_QOS = _qos(reliable=True, latched=True, depth=1)


@dataclass(frozen=True)
class FramePair:
    """One image file and its ground-truth file (None when the bag has no labels)."""

    name: str
    image_path: pathlib.Path
    label_path: pathlib.Path | None


@dataclass(frozen=True)
class FrameSource:
    """Frames found on disk and how to read their labels.

    Attributes:
        layout: ``camvid``, ``cityscapes`` or ``folders``.
        frames: image/label file pairs in name order.
        class_table: classes of the label values after `label_lut`.
        label_lut: (256,) int16 map from stored label values to class ids (255 = ignore);
            -1 marks values that are not legal in this layout.
    """

    layout: str
    frames: tuple[FramePair, ...]
    class_table: ClassTable
    label_lut: np.ndarray


@dataclass(frozen=True)
class MakeBagConfig:
    """Topics, timing and storage of a made bag.

    Attributes:
        image_topic: camera topic (sensor_msgs/Image rgb8); compressed frames go to
            ``<image_topic>/compressed``.
        label_topic: ground-truth topic (sensor_msgs/Image mono8, same header as the image;
            never compressed, so the ground truth stays exact).
        class_table_topic: latched std_msgs/String with the JSON class table of the labels.
        frame_id: header.frame_id of images and labels.
        rate_hz: camera frame rate.
        start_time_ns: header stamp of the first frame, ns since the epoch; None: now.
        stamp_jitter_ms: standard deviation of the driver's stamp jitter (clipped to a quarter
            period so stamps stay in order); 0 gives an exact grid.
        transport_delay_ms: log time minus header stamp, as a recorder receives frames after
            capture.
        storage: ``sqlite3`` or ``mcap``.
        seed: seed of the jitter, so the same inputs give the same bag.
        compression: None for raw frames, or ``jpeg`` / ``png`` for sensor_msgs/CompressedImage
            frames (PNG is lossless: the same pixels as raw).
        jpeg_quality: JPEG quality 1..100 (image_transport's default, 95).
    """

    image_topic: str = '/camera/image_raw'
    label_topic: str = '/camera/ground_truth'
    class_table_topic: str = '/camera/ground_truth/class_table'
    frame_id: str = 'camera'
    rate_hz: float = 10.0
    start_time_ns: int | None = None
    stamp_jitter_ms: float = 0.5
    transport_delay_ms: float = 3.0
    storage: str = 'sqlite3'
    seed: int = 0
    compression: str | None = None
    jpeg_quality: int = 95

    @property
    def camera_topic(self) -> str:
        """The topic the camera frames are written to."""
        return self.image_topic + (COMPRESSED_SUFFIX if self.compression else '')

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f'rate_hz must be > 0, got {self.rate_hz}')
        if self.stamp_jitter_ms < 0 or self.transport_delay_ms < 0:
            raise ValueError('stamp_jitter_ms and transport_delay_ms must be >= 0, got '
                             f'{self.stamp_jitter_ms} and {self.transport_delay_ms}')
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got '{self.storage}'")
        if self.compression is not None and self.compression not in CODECS:
            raise ValueError(f'compression must be one of {CODECS} or None, got '
                             f"'{self.compression}'")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f'jpeg_quality must be in [1, 100], got {self.jpeg_quality}')


@dataclass(frozen=True)
class MakeBagResult:
    """What was written: the bag, its frames and the span of their stamps."""

    path: pathlib.Path
    num_frames: int
    has_labels: bool
    class_table: ClassTable
    image_size: tuple[int, int]  # (width, height) of the first frame
    first_stamp_ns: int
    last_stamp_ns: int
    storage: str
    camera_topic: str
    compression: str | None
    frame_files: dict[int, str]  # header stamp (ns) -> name of the image file of that frame


def _images_in(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def _lut(mapping: dict[int, int]) -> np.ndarray:
    """(256,) int16 map of stored label values; -1 marks values that no label may hold."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for stored, class_id in mapping.items():
        lut[stored] = class_id
    return lut


def _identity_lut(class_table: ClassTable) -> np.ndarray:
    return _lut({k: k for k in range(class_table.num_classes)})


def _pair_by_stem(images: dict[str, pathlib.Path], labels: dict[str, pathlib.Path] | None,
                  *, image_dir: pathlib.Path, label_dir: pathlib.Path | None
                  ) -> tuple[FramePair, ...]:
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in '{image_dir}'")
    if labels is None:
        return tuple(FramePair(name, path, None) for name, path in sorted(images.items()))
    missing = sorted(set(images) - set(labels))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(images)} images in '{image_dir}' have no label of the same "
            f"name in '{label_dir}' (first: {missing[0]}); add the labels or remove the images")
    return tuple(FramePair(name, path, labels[name]) for name, path in sorted(images.items()))


def find_frames(source: str | pathlib.Path, *, labels: str | pathlib.Path | None = None,
                layout: str = 'auto', split: str = 'val',
                class_table: ClassTable | None = None) -> FrameSource:
    """Find image files and their ground truth.

    Args:
        source: CamVid root, Cityscapes root, or an image folder (layout ``folders``).
        labels: label folder for layout ``folders``; None there means a bag without labels.
        layout: ``auto`` (detected from the folder names), ``camvid``, ``cityscapes`` or
            ``folders``.
        split: dataset split of the CamVid and Cityscapes layouts.
        class_table: classes of the values in a plain label folder (required with ``labels``);
            the dataset layouts use their own table.

    Raises:
        FileNotFoundError: a folder, or the label of some image, is missing.
        ValueError: unknown layout, or a plain label folder without its class table.
    """
    source = pathlib.Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"image source '{source}' is not a directory")
    if layout == 'auto':
        if (source / 'leftImg8bit').is_dir():
            layout = 'cityscapes'
        elif (source / split).is_dir() and (source / f'{split}annot').is_dir():
            layout = 'camvid'
        else:
            layout = 'folders'
    if layout == 'camvid':
        image_dir, label_dir = source / split, source / f'{split}annot'
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"CamVid layout expects '{folder}'; pass the CamVid root "
                                        'holding <split>/ and <split>annot/')
        frames = _pair_by_stem(_images_in(image_dir), _images_in(label_dir),
                               image_dir=image_dir, label_dir=label_dir)
        lut = _lut({k: k for k in range(CAMVID_11.num_classes)} | {CAMVID_VOID: IGNORE_INDEX})
        return FrameSource('camvid', frames, CAMVID_11, lut)
    if layout == 'cityscapes':
        return _find_cityscapes(source, split)
    if layout == 'folders':
        label_dir = pathlib.Path(labels) if labels is not None else None
        if label_dir is not None and not label_dir.is_dir():
            raise FileNotFoundError(f"label folder '{label_dir}' is not a directory")
        if label_dir is not None and class_table is None:
            # Label ids mean nothing without their table; guessing one would score silently wrong.
            raise ValueError(f"labels in plain folder '{label_dir}' need their class table: "
                             'pass --classes cityscapes19, camvid11 or a JSON class table file')
        table = class_table or CITYSCAPES_19
        frames = _pair_by_stem(_images_in(source),
                               _images_in(label_dir) if label_dir else None,
                               image_dir=source, label_dir=label_dir)
        return FrameSource('folders', frames, table, _identity_lut(table))
    raise ValueError(f"unknown layout '{layout}'; expected auto, camvid, cityscapes or folders")


def _find_cityscapes(root: pathlib.Path, split: str) -> FrameSource:
    image_dir, label_dir = root / 'leftImg8bit' / split, root / 'gtFine' / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Cityscapes layout expects '{image_dir}'")
    images = {p.name[:-len('_leftImg8bit.png')]: p
              for p in sorted(image_dir.glob('*/*_leftImg8bit.png'))}
    if not label_dir.is_dir():
        return FrameSource('cityscapes', _pair_by_stem(images, None, image_dir=image_dir,
                                                       label_dir=None),
                           CITYSCAPES_19, _identity_lut(CITYSCAPES_19))
    # Prefer the train-id images of cityscapesscripts' createTrainIdLabelImgs; else map label ids.
    train_ids = {p.name[:-len('_gtFine_labelTrainIds.png')]: p
                 for p in label_dir.glob('*/*_gtFine_labelTrainIds.png')}
    if train_ids:
        labels, lut = train_ids, _identity_lut(CITYSCAPES_19)
    else:
        labels = {p.name[:-len('_gtFine_labelIds.png')]: p
                  for p in label_dir.glob('*/*_gtFine_labelIds.png')}
        # Ids 0..33 are all legal; those without a train id are ignored.
        lut = _lut({k: CITYSCAPES_ID_TO_TRAIN_ID.get(k, IGNORE_INDEX) for k in range(34)})
    frames = _pair_by_stem(images, labels, image_dir=image_dir, label_dir=label_dir)
    return FrameSource('cityscapes', frames, CITYSCAPES_19, lut)


def read_label(path: pathlib.Path, *, lut: np.ndarray, class_table: ClassTable,
               image_shape: tuple[int, ...]) -> np.ndarray:
    """Read a label image as (H, W) uint8 class ids (255 = ignore) and check it.

    Raises:
        ValueError: not a single-channel 8-bit image, another size than its image, or values
            outside the class table.
    """
    # The datasets' reader: palette PNGs (GTA5, Mapillary) hold the class id as the palette index,
    # which OpenCV would expand to colours. Imported here: it brings torch in.
    from tqdm_core.data.base import read_label_ids

    raw = read_label_ids(path)
    if raw.shape != image_shape[:2]:
        raise ValueError(
            f"label '{path}' is {raw.shape[1]}x{raw.shape[0]} but its image is "
            f'{image_shape[1]}x{image_shape[0]}; labels must have the image resolution')
    label = lut[raw]
    if (label < 0).any():
        unexpected = np.unique(raw[label < 0]).tolist()
        raise ValueError(
            f"label '{path}' holds values {unexpected} that are not classes of "
            f"'{class_table.name}' ({class_table.num_classes} classes, {IGNORE_INDEX} = ignore); "
            'pick the matching class table or layout, or fix the labels')
    return label.astype(np.uint8)


def _stamps(num_frames: int, config: MakeBagConfig) -> np.ndarray:
    """(N,) int64 header stamps in ns: a steady grid plus clipped Gaussian driver jitter."""
    start = config.start_time_ns if config.start_time_ns is not None else time.time_ns()
    period_ns = 1e9 / config.rate_hz
    rng = np.random.default_rng(config.seed)
    jitter = rng.normal(0.0, config.stamp_jitter_ms * 1e6, num_frames)
    jitter = np.clip(jitter, -period_ns / 4, period_ns / 4)
    jitter[0] = 0.0  # the first stamp is exactly the requested start
    return start + np.round(np.arange(num_frames) * period_ns + jitter).astype(np.int64)


def _header(store, stamp_ns: int, frame_id: str):
    """A rosbags ``std_msgs/Header`` with a stamp in ns since the epoch."""
    types = store.types
    return types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=stamp_ns // 1_000_000_000,
                                                   nanosec=stamp_ns % 1_000_000_000),
        frame_id=frame_id)


def image_message(store, *, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    """Build a rosbags ``sensor_msgs/Image`` of an (H, W) or (H, W, C) uint8 array, unpadded."""
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    return store.types[IMAGE_TYPE](
        header=_header(store, stamp_ns, frame_id), height=height, width=width,
        encoding=encoding, is_bigendian=0, step=width * channels,
        data=np.ascontiguousarray(array).reshape(-1))


def compressed_image_message(store, *, image: np.ndarray, codec: str, jpeg_quality: int,
                             stamp_ns: int, frame_id: str):
    """Build a rosbags ``sensor_msgs/CompressedImage`` of an (H, W, 3) uint8 RGB frame."""
    data, image_format = compress_rgb8(image, codec, jpeg_quality=jpeg_quality)
    return store.types[COMPRESSED_IMAGE_TYPE](
        header=_header(store, stamp_ns, frame_id), format=image_format,
        data=np.frombuffer(data, dtype=np.uint8))


def _write_frames(writer: Writer, store, *, frames: FrameSource, pairs: tuple[FramePair, ...],
                  stamps: list[int], config: MakeBagConfig, progress: bool) -> tuple[int, int]:
    """Write the topics of the frames into an open writer; return (width, height) of frame 0."""
    delay_ns = int(round(config.transport_delay_ms * 1e6))
    has_labels = pairs[0].label_path is not None
    camera_type = COMPRESSED_IMAGE_TYPE if config.compression else IMAGE_TYPE
    image_conn = writer.add_connection(config.camera_topic, camera_type, typestore=store,
                                       offered_qos_profiles=[CAMERA_QOS])
    if has_labels:
        label_conn = writer.add_connection(config.label_topic, IMAGE_TYPE, typestore=store,
                                           offered_qos_profiles=[CAMERA_QOS])
        table_conn = writer.add_connection(config.class_table_topic, STRING_TYPE,
                                           typestore=store, offered_qos_profiles=[LATCHED_QOS])
        table = store.types[STRING_TYPE](data=class_table_to_json(frames.class_table))
        writer.write(table_conn, stamps[0], store.serialize_cdr(table, STRING_TYPE))
    image_size = (0, 0)
    for pair, stamp in tqdm(list(zip(pairs, stamps)), desc='make bag', unit='frame',
                            disable=not progress):
        image = read_image(pair.image_path)  # EXIF orientation ignored, as for the labels
        if image_size == (0, 0):
            image_size = (image.shape[1], image.shape[0])
        if config.compression:
            msg = compressed_image_message(
                store, image=image, codec=config.compression, jpeg_quality=config.jpeg_quality,
                stamp_ns=stamp, frame_id=config.frame_id)
        else:
            msg = image_message(store, array=image, encoding='rgb8', stamp_ns=stamp,
                                frame_id=config.frame_id)
        writer.write(image_conn, stamp + delay_ns, store.serialize_cdr(msg, camera_type))
        if has_labels:
            label = read_label(pair.label_path, lut=frames.label_lut,
                               class_table=frames.class_table, image_shape=image.shape)
            msg = image_message(store, array=label, encoding='mono8', stamp_ns=stamp,
                                frame_id=config.frame_id)
            writer.write(label_conn, stamp + delay_ns, store.serialize_cdr(msg, IMAGE_TYPE))
    return image_size


def make_bag(frames: FrameSource, output: str | pathlib.Path, *,
             config: MakeBagConfig = MakeBagConfig(), limit: int | None = None,
             progress: bool = False) -> MakeBagResult:
    """Write the frames (and labels) into a new rosbag2 bag at ``output``.

    The bag is written into a hidden staging directory and renamed at the end, so ``output``
    either holds a complete bag or does not exist.

    Args:
        frames: from `find_frames`.
        output: bag directory to create; must not exist.
        config: topics, timing and storage.
        limit: write only the first ``limit`` frames.
        progress: show a tqdm progress bar.

    Raises:
        FileExistsError: ``output`` exists.
        ValueError: ``limit`` is below 1, an image or label is unreadable, or a label does not
            fit its image.
    """
    if limit is not None and limit < 1:
        raise ValueError(f'limit must be >= 1 or None, got {limit}')
    output = pathlib.Path(output)
    pairs = frames.frames[:limit] if limit is not None else frames.frames
    if not pairs:
        raise ValueError('no frames to write')
    stamps = _stamps(len(pairs), config).tolist()
    with staged_bag_path(output) as staging:
        writer = Writer(staging, version=BAG_VERSION, storage_plugin=STORAGES[config.storage])
        # Writer's own context manager would finalise the bag on an error: abort instead.
        writer.open()
        try:
            image_size = _write_frames(writer, typestore_for(), frames=frames, pairs=pairs,
                                       stamps=stamps, config=config, progress=progress)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    return MakeBagResult(path=output, num_frames=len(pairs),
                         has_labels=pairs[0].label_path is not None,
                         class_table=frames.class_table, image_size=image_size,
                         first_stamp_ns=stamps[0], last_stamp_ns=stamps[-1],
                         storage=config.storage, camera_topic=config.camera_topic,
                         compression=config.compression,
                         frame_files={stamp: pair.image_path.name
                                      for stamp, pair in zip(stamps, pairs)})


def class_table_by_name_or_file(spec: str) -> ClassTable:
    """Return a built-in class table (``cityscapes19``, ``camvid11``) or one from a JSON file."""
    path = pathlib.Path(spec)
    if path.suffix == '.json':
        if not path.is_file():
            raise FileNotFoundError(f"class table file '{path}' does not exist")
        try:
            return class_table_from_json(path.read_text())
        except ClassTableFormatError as err:
            raise ClassTableFormatError(f"class table file '{path}': {err}") from None
    return get_class_table(spec)
