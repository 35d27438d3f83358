"""Scoring a stream of segmented frames: confusion matrix, calibration, latency and example frames.

Every evaluation (`training.evaluate` on a dataset, `tqdm-bag evaluate` offline on a bag, and live through a
running ROS node) is a source of frames feeding one `FrameScorer`:

- `predicted_frames` runs a Predictor over labelled images (datasets, bags) and times it;
- a live source yields the frames a node answered, with their arrival latency, and `DroppedFrame` for the others.

`score_frames` drains such a stream into the scorer (with a progress bar); `FrameScorer.report` then gives the
`EvaluationReport` that `tqdm_core.evaluation.report` writes.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from tqdm_core.classes import IGNORE_INDEX, ClassTable
from tqdm_core.evaluation.calibration import CalibrationAccumulator
from tqdm_core.evaluation.figures import OverlayFrame
from tqdm_core.evaluation.report import UNTRAINED_WARNING, EvaluationReport, FrameRecord, ModelInfo
from tqdm_core.evaluation.sem_seg_evaluator import SemSegEvaluator, classes_without_counterpart

if TYPE_CHECKING:
    from tqdm_core.inference.predictor import Prediction

OVERLAY_WIDTH = 640  # example frames are kept at most this wide (nearest for labels, area for the rest)
PREDICTOR_LATENCY = "Predictor time per frame"  # what `predicted_frames` measures


class EvaluationError(ValueError):
    """Predictions and ground truth that cannot be scored together, or nothing to score."""


@dataclass(frozen=True)
class LabeledImage:
    """An image with its ground truth, from a dataset or a bag.

    Attributes:
        name: how reports and errors refer to it (file name, ``stamp 12.345678901 s``).
        image: (H, W, 3) uint8 RGB.
        ground_truth: (H, W) uint8 ids of the ground-truth class table, 255 = ignore.
        source_file: the image file a bag frame was made from, when known; None otherwise.
    """

    name: str
    image: np.ndarray
    ground_truth: np.ndarray
    source_file: str | None = None


@dataclass(frozen=True)
class ScoredFrame:
    """A labelled image and a model's answer for it.

    Attributes:
        sample: the image and its ground truth.
        labels: (H, W) uint8 predicted ids of the model's class table, 255 = unlabeled.
        confidence: (H, W) float32 in [0, 1].
        latency_ms: time to the answer in ms, or None when it is not known.
    """

    sample: LabeledImage
    labels: np.ndarray
    confidence: np.ndarray
    latency_ms: float | None


@dataclass(frozen=True)
class DroppedFrame:
    """A labelled image that got no answer (a live node keeps only the newest frame).

    Attributes:
        name: the image's name.
        source_file: the image file it was made from, when known.
    """

    name: str
    source_file: str | None = None


class FrameScorer:
    """Accumulates the scores of segmented frames against their ground truth.

    Args:
        ground_truth_classes: classes of the ground-truth labels.
        model_classes: classes of the predictions; mapped to the ground truth by name when they differ
            (`SemSegEvaluator.for_class_table`).
        num_frames: frames expected, to spread the example frames over the stream.
        num_overlays: example frames kept for the overlay picture.
        calibration_bins: confidence bins of the reliability diagram and ECE.

    Raises:
        EvaluationError: no model class corresponds to any ground-truth class.
    """

    def __init__(self, *, ground_truth_classes: ClassTable, model_classes: ClassTable, num_frames: int,
                 num_overlays: int = 4, calibration_bins: int = 15) -> None:
        if num_overlays < 0 or calibration_bins < 1:
            raise ValueError(f"num_overlays must be >= 0 and calibration_bins >= 1, got {num_overlays} and "
                             f"{calibration_bins}")
        self.ground_truth_classes = ground_truth_classes
        self.model_classes = model_classes
        self.evaluator = SemSegEvaluator.for_class_table(ground_truth_classes, model_table=model_classes)
        mapping = self.evaluator.class_mapping
        if mapping is not None and (mapping == IGNORE_INDEX).all():
            raise EvaluationError(
                f"no class of the model's table '{model_classes.name}' ({', '.join(model_classes.names)}) "
                f"corresponds to a class of the ground truth '{ground_truth_classes.name}' "
                f"({', '.join(ground_truth_classes.names)}); evaluate with a model trained for these classes")
        self.calibration = CalibrationAccumulator(calibration_bins)
        self.num_frames = num_frames
        self.latencies_ms: list[float] = []
        self.frames_scored = 0
        self.dropped: list[str] = []
        self.frame_records: list[FrameRecord] = []
        self.overlays: list[OverlayFrame] = []
        picks = np.linspace(0, max(num_frames - 1, 0), min(num_overlays, num_frames))
        self._overlay_indices = set(np.round(picks).astype(int).tolist())

    def add(self, index: int, frame: ScoredFrame) -> None:
        """Score one frame.

        Args:
            index: position of the frame in the stream (decides the example frames).
            frame: the image, its ground truth and the prediction.

        Raises:
            EvaluationError: the prediction has another size than the ground truth, or the ground truth holds
                ids outside its class table.
        """
        sample, truth = frame.sample, frame.sample.ground_truth
        if frame.labels.shape != truth.shape or frame.confidence.shape != truth.shape:
            raise EvaluationError(
                f"the prediction of {sample.name} is {frame.labels.shape[1]}x{frame.labels.shape[0]} (confidence "
                f"{frame.confidence.shape[1]}x{frame.confidence.shape[0]}) but its ground truth is "
                f"{truth.shape[1]}x{truth.shape[0]}; predictions must have the camera resolution")
        table = self.ground_truth_classes
        bad = np.unique(truth[(truth >= table.num_classes) & (truth != IGNORE_INDEX)])
        if bad.size:
            raise EvaluationError(
                f"the ground truth of {sample.name} holds ids {bad[:10].tolist()} that are not classes of its "
                f"class table '{table.name}' ({table.num_classes} classes, {IGNORE_INDEX} = ignore); the labels "
                f"belong to another class table: score them with that one")
        try:
            self.evaluator.process(frame.labels, truth)
            self.calibration.process(frame.confidence, frame.labels, truth,
                                     class_mapping=self.evaluator.class_mapping)
        except ValueError as error:
            raise EvaluationError(f"the prediction of {sample.name} cannot be scored: {error}") from None
        if index in self._overlay_indices:
            self.overlays.append(OverlayFrame(
                image=_thumbnail(sample.image), prediction=_thumbnail(frame.labels),
                confidence=_thumbnail(frame.confidence), ground_truth=_thumbnail(truth),
                title=sample.source_file or sample.name))
        self.frames_scored += 1
        if frame.latency_ms is not None:
            self.latencies_ms.append(frame.latency_ms)
        self.frame_records.append(FrameRecord(name=sample.name, source_file=sample.source_file, scored=True,
                                              latency_ms=frame.latency_ms))

    def drop(self, frame: DroppedFrame) -> None:
        """Count a frame that got no answer."""
        self.dropped.append(frame.name)
        self.frame_records.append(FrameRecord(name=frame.name, source_file=frame.source_file, scored=False,
                                              latency_ms=None))

    def report(self, *, mode: str, source: str, model: ModelInfo, latency_kind: str, notes: Iterable[str] = (),
               run: dict | None = None, model_time_p50_ms: float | None = None) -> EvaluationReport:
        """The report of everything scored.

        Args:
            mode: "offline" (a Predictor on every frame) or "live" (a running node).
            source: what was evaluated: a dataset label (``camvid_val``) or a bag path.
            model: what produced the predictions.
            latency_kind: what the latencies measure, in words.
            notes: warnings for the top of the summary.
            run: how the evaluation ran (wall time, replay rate, ...).
            model_time_p50_ms: median model time per frame when the latencies measure more than that (a live
                node's own figure); None otherwise.

        Raises:
            EvaluationError: no frame was scored.
        """
        if not self.frames_scored:
            raise EvaluationError(f"no frame of {source} was scored ({self.num_frames} frames with ground truth, "
                                  f"{len(self.dropped)} dropped); nothing to report")
        notes = list(notes) + self._counterpart_notes()
        if model.trained is False:
            notes.insert(0, UNTRAINED_WARNING)
        return EvaluationReport(
            mode=mode, source=source, model=model, ground_truth_classes=self.ground_truth_classes,
            model_classes=self.model_classes, evaluator=self.evaluator, calibration=self.calibration.result(),
            latencies_ms=np.asarray(self.latencies_ms, dtype=np.float64), latency_kind=latency_kind,
            frames_total=self.num_frames, frames_scored=self.frames_scored, dropped=tuple(self.dropped),
            overlays=tuple(self.overlays), notes=tuple(notes), run=dict(run or {}),
            frame_records=tuple(self.frame_records), model_time_p50_ms=model_time_p50_ms)

    def _counterpart_notes(self) -> list[str]:
        """Warnings naming the classes the mapping between the model's and the ground truth's tables leaves out."""
        model, truth = self.model_classes, self.ground_truth_classes
        unmatched = classes_without_counterpart(model.names, truth.names, self.evaluator.class_mapping)
        notes = []
        if unmatched["model"]:
            notes.append(f"the model's classes {', '.join(unmatched['model'])} have no counterpart in the ground "
                         f"truth's table '{truth.name}': predicting them always counts as wrong")
        if unmatched["ground_truth"]:
            notes.append(f"the ground truth's classes {', '.join(unmatched['ground_truth'])} have no counterpart in "
                         f"the model's table '{model.name}': the model cannot predict them, so their IoU is 0 "
                         "wherever they occur in the ground truth (n/a where they do not)")
        return notes


def predicted_frames(predict: Callable[[np.ndarray], Prediction],
                     samples: Iterable[LabeledImage]) -> Iterator[ScoredFrame]:
    """Run a model on each labelled image, timing each call (its latency).

    Args:
        predict: an RGB image -> `Prediction` function, e.g. `Predictor.predict`.
        samples: the labelled images.
    """
    for sample in samples:
        started = time.perf_counter()
        prediction = predict(sample.image)
        latency_ms = (time.perf_counter() - started) * 1e3
        yield ScoredFrame(sample=sample, labels=prediction.labels, confidence=prediction.confidence,
                          latency_ms=latency_ms)


def score_frames(frames: Iterable[ScoredFrame | DroppedFrame], scorer: FrameScorer, *, description: str = "evaluate",
                 progress: bool = False) -> float:
    """Feed a stream of frames into `scorer`; returns the wall time it took in seconds.

    Args:
        frames: scored or dropped frames, in stream order (their position picks the example frames).
        scorer: the accumulator.
        description: progress-bar label.
        progress: show a progress bar (over `scorer.num_frames`).
    """
    began = time.monotonic()
    for index, frame in enumerate(tqdm(frames, total=scorer.num_frames, desc=description, unit="frame",
                                       disable=not progress)):
        if isinstance(frame, DroppedFrame):
            scorer.drop(frame)
        else:
            scorer.add(index, frame)
    return time.monotonic() - began


def _thumbnail(array: np.ndarray) -> np.ndarray:
    """Shrink a frame wider than `OVERLAY_WIDTH` for the overlay picture (nearest for label maps)."""
    height, width = array.shape[:2]
    if width <= OVERLAY_WIDTH:
        return array
    size = (OVERLAY_WIDTH, max(1, round(height * OVERLAY_WIDTH / width)))
    interpolation = cv2.INTER_NEAREST if array.dtype == np.uint8 and array.ndim == 2 else cv2.INTER_AREA
    return cv2.resize(array, size, interpolation=interpolation)
