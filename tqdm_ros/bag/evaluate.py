"""Score segmentations of a bag's camera frames against its ground-truth topic.

Two sources of predictions, one way to score them (`tqdm_core.evaluation`, which
``training.evaluate`` uses too, so the three write the same report):

- offline (`evaluate_offline`): read the bag and run a tqdm_core Predictor on every frame.
- live (`evaluate_live`): replay the bag's camera topic through a running segmentation node and
  score the outputs it publishes (`tqdm_ros.bag.live_source`).

The live mode needs rclpy; the offline mode needs torch through the Predictor. Neither is imported
before it is used.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
import pathlib
from typing import TYPE_CHECKING

from tqdm_core.classes import ClassTable
from tqdm_core.evaluation.report import EvaluationReport, ModelInfo
from tqdm_core.evaluation.scoring import FrameScorer, LabeledImage, PREDICTOR_LATENCY
from tqdm_core.evaluation.scoring import predicted_frames, score_frames

from tqdm_ros.bag.bag_reader import BagError, connections_for, iter_labeled_frames, open_bag
from tqdm_ros.bag.bag_reader import read_class_table, resolve_camera_topic
from tqdm_ros.bag.make_bag import MakeBagConfig

if TYPE_CHECKING:
    from tqdm_ros.bag.live_source import LiveConfig

_BAG_DEFAULTS = MakeBagConfig()


@dataclass(frozen=True)
class EvaluationConfig:
    """What to read from the bag and what to keep for the report.

    Attributes:
        image_topic: camera topic: sensor_msgs/Image there, or sensor_msgs/CompressedImage on
            ``<image_topic>/compressed`` when the bag holds that instead.
        label_topic: ground-truth topic (mono8 or 8UC1 class ids, same stamps as the
            camera).
        class_table_topic: JSON class table of the ground truth (std_msgs/String).
        ground_truth_classes: class table of the ground truth for bags without a class-table
            topic; None reads it from ``class_table_topic``.
        limit: score only the first N frames; None scores all.
        num_overlays: frames drawn in the overlay grid, spread over the bag; 0: no grid.
        calibration_bins: confidence bins of the reliability diagram and ECE.
        frame_files: header stamp (ns) -> the image file the frame was made from, when known
            (`MakeBagResult.frame_files`); the report names the frames' files with it.
    """

    image_topic: str = _BAG_DEFAULTS.image_topic
    label_topic: str = _BAG_DEFAULTS.label_topic
    class_table_topic: str = _BAG_DEFAULTS.class_table_topic
    ground_truth_classes: ClassTable | None = None
    limit: int | None = None
    num_overlays: int = 4
    calibration_bins: int = 15
    frame_files: Mapping[int, str] | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f'limit must be >= 1 or None, got {self.limit}')
        if self.num_overlays < 0 or self.calibration_bins < 1:
            raise ValueError('num_overlays must be >= 0 (0: no overlay picture) and '
                             f'calibration_bins >= 1, got {self.num_overlays} and '
                             f'{self.calibration_bins}')


@dataclass(frozen=True)
class BagFrames:
    """Which frames of a bag to evaluate.

    Attributes:
        path: rosbag2 directory.
        image_topic: camera topic.
        label_topic: ground-truth topic (same stamps as the camera).
        limit: only the first N labelled frames; None: all.
        frame_files: header stamp (ns) -> image file of the frame, when known.
    """

    path: pathlib.Path
    image_topic: str
    label_topic: str
    limit: int | None = None
    frame_files: Mapping[int, str] | None = None


def frame_name(stamp_ns: int) -> str:
    """Return how reports name a bag frame: its header stamp in seconds, to the nanosecond."""
    return f'stamp {stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d} s'


def labeled_frames(reader, frames: BagFrames) -> Iterator[tuple[int, LabeledImage]]:
    """Yield (header stamp, labelled image) of the frames with ground truth, up to the limit."""
    pairs = iter_labeled_frames(reader, image_topic=frames.image_topic,
                                label_topic=frames.label_topic)
    files = frames.frame_files or {}
    for index, frame in enumerate(pairs):
        if frames.limit is not None and index >= frames.limit:
            return
        yield frame.stamp_ns, LabeledImage(name=frame_name(frame.stamp_ns), image=frame.image,
                                           ground_truth=frame.label,
                                           source_file=files.get(frame.stamp_ns))


def ground_truth_classes(reader, config: EvaluationConfig) -> ClassTable:
    """Return the class table of the bag's ground truth: its class-table topic, or the given table.

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


def _read_bag(bag: pathlib.Path, config: EvaluationConfig) -> tuple[ClassTable, int, BagFrames]:
    """Return the ground-truth classes, the number of frames to score and the frames' selection.

    Raises:
        FileNotFoundError, BagError: a missing or damaged bag, a missing topic or class table.
    """
    with open_bag(bag) as reader:
        table = ground_truth_classes(reader, config)
        image_topic = resolve_camera_topic(reader, config.image_topic)
        connections = connections_for(reader, [image_topic, config.label_topic])
    count = sum(c.msgcount for c in connections if c.topic == config.label_topic)
    count = count if config.limit is None else min(count, config.limit)
    return table, count, BagFrames(path=bag, image_topic=image_topic,
                                   label_topic=config.label_topic, limit=config.limit,
                                   frame_files=config.frame_files)


def _scorer(table: ClassTable, model_classes: ClassTable, count: int,
            config: EvaluationConfig) -> FrameScorer:
    return FrameScorer(ground_truth_classes=table, model_classes=model_classes, num_frames=count,
                       num_overlays=config.num_overlays,
                       calibration_bins=config.calibration_bins)


def _unpaired_notes(scorer: FrameScorer) -> list[str]:
    missing = scorer.num_frames - scorer.frames_scored - len(scorer.dropped)
    return ([f'{missing} ground-truth frames had no camera frame of the same stamp and were not '
             'scored'] if missing > 0 else [])


def evaluate_offline(bag: str | pathlib.Path, predictor, *, model: ModelInfo,
                     config: EvaluationConfig = EvaluationConfig(),
                     progress: bool = False) -> EvaluationReport:
    """Run a Predictor on every camera frame of a bag that has ground truth and score it.

    Args:
        bag: rosbag2 directory with camera, ground-truth and class-table topics.
        predictor: a ``tqdm_core.Predictor``.
        model: what the predictor runs (shown in the report, with ``predictor.describe()``).
        config: topics and report options.
        progress: show a progress bar.

    Raises:
        FileNotFoundError, BagError: a missing, damaged or unsuitable bag.
        tqdm_core.evaluation.EvaluationError: predictions that cannot be scored.
    """
    bag = pathlib.Path(bag)
    table, count, frames = _read_bag(bag, config)
    scorer = _scorer(table, predictor.class_table, count, config)
    with open_bag(bag) as reader:
        samples = (sample for _, sample in labeled_frames(reader, frames))
        wall_s = score_frames(predicted_frames(predictor.predict, samples), scorer,
                              progress=progress)
    model = ModelInfo(name=model.name, source=model.source, trained=model.trained,
                      details={**model.details, **predictor.describe()})
    return scorer.report(mode='offline', source=str(bag), model=model,
                         latency_kind=PREDICTOR_LATENCY, notes=_unpaired_notes(scorer),
                         run={'wall_s': wall_s})


def evaluate_live(bag: str | pathlib.Path, *, context, model: ModelInfo | None = None,
                  config: EvaluationConfig = EvaluationConfig(), live: LiveConfig | None = None,
                  record_to: str | pathlib.Path | None = None,
                  progress: bool = False) -> EvaluationReport:
    """Replay a bag's camera topic through a running segmentation node and score its outputs.

    Args:
        bag: rosbag2 directory with camera, ground-truth and class-table topics.
        context: an initialised rclpy context (network-safe environment, see ROS_PIP.md).
        model: what the node runs, if the caller knows (shown in the report).
        config: topics and report options.
        live: replay rate, topics and timeouts; None: the defaults.
        record_to: also record the node's ``labels`` and ``confidence`` into a new bag here.
        progress: show a progress bar.

    Raises:
        FileNotFoundError, BagError: a missing, damaged or unsuitable bag.
        TimeoutError: no node publishes the outputs or subscribes to the camera topic.
    """
    from tqdm_ros.bag.live_source import live_node_source, LiveConfig

    bag = pathlib.Path(bag)
    table, count, frames = _read_bag(bag, config)
    with live_node_source(frames, context=context, live=live or LiveConfig(),
                          record_to=record_to) as session:
        scorer = _scorer(table, session.model_classes, count, config)
        wall_s = score_frames(session.frames(), scorer, description='evaluate live',
                              progress=progress)
    reported = session.model_details  # what the node said about its model on /diagnostics
    model = model or ModelInfo(name=reported.get('preset', session.model_classes.name), trained=None,
                               source=reported.get('source') or
                               f"segmentation node at {session.run['output_namespace']}")
    model = ModelInfo(name=model.name, source=model.source, trained=model.trained,
                      details={**reported, **model.details})
    notes = _unpaired_notes(scorer)
    skipped = len(scorer.dropped) - session.confidence_lost
    if skipped:
        rate = session.run['replay_rate']
        notes.append(f'{skipped} of {count} frames were dropped by the node (it keeps only the '
                     f'newest frame): replay slower than rate {rate:.3g}')
    if session.confidence_lost:
        notes.append(f'{session.confidence_lost} of {count} frames got their labels but their '
                     'confidence message was lost; they count as dropped')
    return scorer.report(mode='live', source=str(bag), model=model,
                         latency_kind='label arrival minus frame publication', notes=notes,
                         run={**session.run, 'wall_s': wall_s},
                         model_time_p50_ms=session.model_time_p50_ms)
