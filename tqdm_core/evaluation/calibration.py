"""Confidence calibration of per-pixel predictions: expected / maximum calibration error and reliability diagrams.

Pixels are binned by confidence into ``num_bins`` equal-width bins over [0, 1] (bin b holds confidences in
[b / n, (b + 1) / n), the last bin also holds 1.0). Only per-bin sums are kept (count, sum of confidences, number
correct), so a whole dataset costs three small arrays and accumulators from several workers can be merged.

- ECE = sum over bins of (n_b / N) * |accuracy_b - mean confidence_b|
- MCE = max over non-empty bins of |accuracy_b - mean confidence_b|
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tqdm_core.classes import IGNORE_INDEX
from tqdm_core.evaluation.sem_seg_evaluator import map_predictions


@dataclass(frozen=True)
class CalibrationResult:
    """Calibration summary and the data of a reliability diagram.

    Attributes:
        ece: expected calibration error in [0, 1].
        mce: maximum calibration error in [0, 1] over non-empty bins.
        num_samples: number of pixels accumulated.
        bin_edges: (num_bins + 1,) bin boundaries in [0, 1].
        bin_counts: (num_bins,) int64 pixels per bin.
        bin_confidence: (num_bins,) mean confidence per bin, NaN for empty bins.
        bin_accuracy: (num_bins,) fraction correct per bin, NaN for empty bins.
    """

    ece: float
    mce: float
    num_samples: int
    bin_edges: np.ndarray
    bin_counts: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray

    def to_json(self) -> dict:
        """Plain JSON types; empty bins have None confidence and accuracy."""

        def listed(values: np.ndarray) -> list[float | None]:
            return [None if math.isnan(v) else float(v) for v in values]

        return {
            "ece": self.ece,
            "mce": self.mce,
            "num_samples": self.num_samples,
            "bin_edges": self.bin_edges.tolist(),
            "bin_counts": self.bin_counts.tolist(),
            "bin_confidence": listed(self.bin_confidence),
            "bin_accuracy": listed(self.bin_accuracy),
        }


class CalibrationAccumulator:
    """Accumulates (confidence, correct) pairs into per-bin sums; ``result()`` gives ECE, MCE and the diagram."""

    def __init__(self, num_bins: int = 15) -> None:
        """Create an empty accumulator.

        Args:
            num_bins: number of equal-width confidence bins over [0, 1] (15 is the common choice for ECE).
        """
        if num_bins < 1:
            raise ValueError(f"num_bins must be at least 1, got {num_bins}")
        self.num_bins = num_bins
        self.bin_counts = np.zeros(num_bins, dtype=np.int64)
        self.bin_confidence_sum = np.zeros(num_bins, dtype=np.float64)
        self.bin_correct = np.zeros(num_bins, dtype=np.int64)

    def reset(self) -> None:
        """Forget every accumulated pixel."""
        self.bin_counts[...] = 0
        self.bin_confidence_sum[...] = 0.0
        self.bin_correct[...] = 0

    def add(self, confidence: np.ndarray, correct: np.ndarray) -> None:
        """Add pixels that are already known to be valid.

        Args:
            confidence: any shape, float confidences in [0, 1].
            correct: same shape, bool (True where the prediction equals the ground truth).
        """
        confidence = np.asarray(confidence)
        correct = np.asarray(correct)
        if confidence.shape != correct.shape:
            raise ValueError(f"confidence shape {confidence.shape} differs from correct shape {correct.shape}")
        if correct.dtype != np.bool_:
            raise ValueError(f"correct must be a bool array, got dtype {correct.dtype}")
        if not np.issubdtype(confidence.dtype, np.floating):
            raise ValueError(f"confidence must be a float array in [0, 1], got dtype {confidence.dtype}")
        if confidence.size == 0:
            return
        low, high = float(confidence.min()), float(confidence.max())
        if not (0.0 <= low and high <= 1.0):  # also catches NaN, for which both comparisons are False
            raise ValueError(f"confidence must lie in [0, 1], found values in [{low}, {high}]")
        bins = np.minimum((confidence.ravel() * self.num_bins).astype(np.int64), self.num_bins - 1)
        self.bin_counts += np.bincount(bins, minlength=self.num_bins)
        self.bin_confidence_sum += np.bincount(bins, weights=confidence.ravel(), minlength=self.num_bins)
        self.bin_correct += np.bincount(bins[correct.ravel()], minlength=self.num_bins)

    def process(
        self,
        confidence: np.ndarray,
        pred_labels: np.ndarray,
        gt_labels: np.ndarray,
        *,
        ignore_index: int = IGNORE_INDEX,
        class_mapping: np.ndarray | Sequence[int] | None = None,
    ) -> None:
        """Add one frame or a batch, scoring pixels whose ground truth is not ``ignore_index``.

        Args:
            confidence: (H, W) or (B, H, W) float confidences in [0, 1] of the predicted class.
            pred_labels: same shape, predicted ids (model ids when ``class_mapping`` is set); 255 (unlabeled) and
                unmapped model classes count as wrong, as in ``SemSegEvaluator``.
            gt_labels: same shape, ground-truth ids, ``ignore_index`` = not scored.
            class_mapping: optional (K_model,) model class -> ground-truth class lookup, 255 = no counterpart.
        """
        confidence, pred, gt = np.asarray(confidence), np.asarray(pred_labels), np.asarray(gt_labels)
        if not confidence.shape == pred.shape == gt.shape:
            raise ValueError(
                f"confidence {confidence.shape}, prediction {pred.shape} and ground truth {gt.shape} must have the "
                "same shape; resize them to the label resolution first"
            )
        if class_mapping is not None:
            pred = map_predictions(pred, class_mapping)
        valid = gt != ignore_index
        # A 255 (unlabeled or unmapped) prediction never equals a valid ground-truth id, so it is counted wrong.
        self.add(confidence[valid], pred[valid] == gt[valid])

    def merge(self, other: "CalibrationAccumulator") -> None:
        """Add the sums of another accumulator with the same number of bins."""
        if other.num_bins != self.num_bins:
            raise ValueError(f"cannot merge an accumulator of {other.num_bins} bins into one of {self.num_bins}")
        self.bin_counts += other.bin_counts
        self.bin_confidence_sum += other.bin_confidence_sum
        self.bin_correct += other.bin_correct

    def result(self) -> CalibrationResult:
        """ECE, MCE and the reliability-diagram data of everything accumulated since the last ``reset``."""
        num_samples = int(self.bin_counts.sum())
        if num_samples == 0:
            raise ValueError("no pixel accumulated: call process() or add() with at least one valid pixel first")
        filled = self.bin_counts > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_confidence = np.where(filled, self.bin_confidence_sum / self.bin_counts, np.nan)
            accuracy = np.where(filled, self.bin_correct / self.bin_counts, np.nan)
        gap = np.abs(accuracy[filled] - mean_confidence[filled])
        return CalibrationResult(
            ece=float((self.bin_counts[filled] / num_samples * gap).sum()),
            mce=float(gap.max()),
            num_samples=num_samples,
            bin_edges=np.linspace(0.0, 1.0, self.num_bins + 1),
            bin_counts=self.bin_counts.copy(),
            bin_confidence=mean_confidence,
            bin_accuracy=accuracy,
        )
