"""Semantic-segmentation scores from one confusion matrix accumulated over a dataset.

Conventions (they decide the numbers, so they are spelled out once here):

- Ground-truth pixels equal to ``ignore_index`` (255 by default) are skipped entirely.
- A *prediction* of 255 ("unlabeled", e.g. below the Predictor's confidence threshold) is **not** ignored: it is a
  wrong answer for the ground-truth class of that pixel. It lowers that class's IoU and accuracy and the pixel
  accuracy, but is a false positive for no class. Such pixels are counted in an extra "unlabeled" column.
- Per-class IoU is ``TP / (TP + FP + FN)``. A class with no ground-truth pixel and no predicted pixel has an
  undefined IoU (NaN) and is left out of every mean. ``miou`` is the mean over the remaining classes (the
  mmsegmentation convention, which the paper's numbers use: a class predicted but absent from the ground truth
  counts as 0). ``miou_gt_present`` averages only over the classes that have ground-truth pixels.
- Scores are fractions in [0, 1], not percentages.
- When a model's class table differs from the ground truth's (a 19-class Cityscapes model scored on CamVid's 11
  classes, or the reverse), a lookup array ``class_mapping`` sends each model class to a ground-truth class or to 255
  (no counterpart); predictions of unmapped classes count as wrong, like 255 predictions, and ground-truth classes
  no model class maps to score 0 IoU wherever they occur (``classes_without_counterpart`` lists both kinds).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from tqdm_core.classes import CAMVID_TO_CITYSCAPES_NAMES, IGNORE_INDEX, ClassTable

# Cityscapes (19) class name -> CamVid (11, SegNet version) class name, from the mapping documented with the CamVid
# data (shared/data/camvid/README.md) read in the model -> ground-truth direction. CamVid merges traffic lights
# into "sign-symbol" and bicycles into "bicyclist", so those predictions are scored as the merged class. Wall,
# terrain, truck, bus, train and motorcycle have no CamVid counterpart: predicting them is always wrong.
CITYSCAPES_TO_CAMVID_NAMES: dict[str, str] = {
    "road": "road",
    "sidewalk": "sidewalk",
    "building": "building",
    "fence": "fence",
    "pole": "pole",
    "traffic light": "sign-symbol",
    "traffic sign": "sign-symbol",
    "vegetation": "tree",
    "sky": "sky",
    "person": "pedestrian",
    "rider": "bicyclist",
    "car": "car",
    "bicycle": "bicyclist",
}

# A CamVid model scored on Cityscapes ground truth (a bag made with Cityscapes labels, or CamVid labels mapped to the
# 19 classes) goes through the mapping the CamVid labels themselves go through (`CAMVID_TO_CITYSCAPES_NAMES`): its
# "sign-symbol" is scored as "traffic sign", "bicyclist" as "rider". Wall, traffic light, terrain, truck, bus, train,
# motorcycle and bicycle have no CamVid counterpart: such a model cannot predict them.

# (model table name, ground-truth table name) -> class renames used when scoring one on the other.
KNOWN_RENAMES: dict[tuple[str, str], dict[str, str]] = {
    ("cityscapes19", "camvid11"): CITYSCAPES_TO_CAMVID_NAMES,
    ("camvid11", "cityscapes19"): CAMVID_TO_CITYSCAPES_NAMES,
}


def class_mapping_by_name(
    model_table: ClassTable, gt_table: ClassTable, *, renames: Mapping[str, str] | None = None
) -> np.ndarray:
    """Lookup array sending each model class to the ground-truth class of the same (or renamed) name.

    Args:
        model_table: classes the model predicts (K_model of them).
        gt_table: classes of the ground truth (K_gt of them).
        renames: model class name -> ground-truth class name for classes whose names differ (for example
            ``CITYSCAPES_TO_CAMVID_NAMES``). Names not listed are matched verbatim.

    Returns:
        (K_model,) int64 array of ground-truth class ids in [0, K_gt), 255 for model classes with no counterpart.
    """
    renames = dict(renames or {})
    unknown_targets = sorted(set(renames.values()) - set(gt_table.names))
    if unknown_targets:
        raise ValueError(
            f"renames point to {unknown_targets}, which are not classes of ground-truth table '{gt_table.name}' "
            f"({list(gt_table.names)}); fix the rename targets"
        )
    gt_ids = {name: index for index, name in enumerate(gt_table.names)}
    mapping = np.full(model_table.num_classes, IGNORE_INDEX, dtype=np.int64)
    for model_id, name in enumerate(model_table.names):
        target = renames.get(name, name)
        if target in gt_ids:
            mapping[model_id] = gt_ids[target]
    return mapping


def _label_lookup(values: np.ndarray, lookup: np.ndarray, what: str, allowed: str) -> np.ndarray:
    """Send an integer label image through a 256-entry lookup table whose -1 entries mark invalid values.

    Args:
        values: integer labels of any shape, expected in [0, 255].
        lookup: (256,) int64 table; -1 marks values that must not occur.
        what: name of the input, for error messages.
        allowed: description of the valid values, for error messages.

    Returns:
        int64 array of the shape of ``values``.
    """
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class ids ({allowed}), got dtype {values.dtype}")
    if values.dtype != np.uint8 and values.size:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 255:
            raise ValueError(f"{what} must hold class ids {allowed}, found values in [{low}, {high}]")
        values = values.astype(np.uint8)
    looked_up = lookup[values]
    if values.size and looked_up.min() < 0:
        bad = np.unique(values[looked_up < 0])[:10].tolist()
        raise ValueError(f"{what} must hold class ids {allowed}, found {bad}; map such ids to 255 before scoring")
    return looked_up


def _checked_mapping(class_mapping: np.ndarray | Sequence[int], num_classes: int = IGNORE_INDEX) -> np.ndarray:
    """``class_mapping`` as an int64 array after checking it has one entry per model class, each in [0, K) or 255."""
    mapping = np.asarray(class_mapping)
    if mapping.ndim != 1 or not 0 < len(mapping) < IGNORE_INDEX or not np.issubdtype(mapping.dtype, np.integer):
        raise ValueError(
            "class_mapping must be a 1-D integer array with one entry per model class (1 to 254 classes), "
            f"got shape {mapping.shape} and dtype {mapping.dtype}"
        )
    bad = sorted({int(v) for v in mapping if not (0 <= v < num_classes or v == IGNORE_INDEX)})
    if bad:
        raise ValueError(
            f"class_mapping entries must be ground-truth ids in [0, {num_classes}) or 255 (no counterpart), "
            f"found {bad}"
        )
    return mapping.astype(np.int64)


def map_predictions(pred_labels: np.ndarray, class_mapping: np.ndarray | Sequence[int]) -> np.ndarray:
    """Translate model class ids into ground-truth class ids through a lookup array.

    Args:
        pred_labels: integer model class ids of any shape, in [0, K_model) or 255 (unlabeled).
        class_mapping: (K_model,) integer array, model class id -> ground-truth class id, 255 = no counterpart.

    Returns:
        uint8 array of the shape of ``pred_labels``: ground-truth ids, 255 for unlabeled and unmapped pixels.
    """
    mapping = _checked_mapping(class_mapping)
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[: len(mapping)] = mapping
    lookup[IGNORE_INDEX] = IGNORE_INDEX
    described = f"in [0, {len(mapping)}) (model classes) or 255"
    return _label_lookup(np.asarray(pred_labels), lookup, "prediction", described).astype(np.uint8)


def classes_without_counterpart(
    model_names: Sequence[str], gt_names: Sequence[str], class_mapping: np.ndarray | Sequence[int] | None
) -> dict[str, list[str]]:
    """The classes that a model class -> ground-truth class mapping leaves without a partner.

    Args:
        model_names: the K_model class names of the model.
        gt_names: the K_gt class names of the ground truth.
        class_mapping: (K_model,) model class id -> ground-truth class id, 255 = no counterpart; None when the model
            predicts ground-truth ids (the two tables are the same).

    Returns:
        ``model``: model classes mapped to no ground-truth class (their predictions always count as wrong);
        ``ground_truth``: ground-truth classes no model class maps to (the model cannot predict them, so their IoU
        is 0 wherever they occur).
    """
    if class_mapping is None:
        return {"model": [], "ground_truth": []}
    mapping = _checked_mapping(class_mapping, len(gt_names))
    reached = set(mapping[mapping != IGNORE_INDEX].tolist())
    return {
        "model": [name for name, target in zip(model_names, mapping) if target == IGNORE_INDEX],
        "ground_truth": [name for index, name in enumerate(gt_names) if index not in reached],
    }


def _as_label_batch(labels: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """(H, W) or (B, H, W) array (or a list of (H, W) arrays of one size) as an array; CPU tensors work too."""
    array = np.asarray(labels)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected labels of shape (H, W) or (B, H, W), got shape {array.shape}")
    return array


class SemSegEvaluator:
    """Accumulates a confusion matrix with ``reset`` / ``process`` / ``evaluate`` and derives the usual scores.

    The raw counts live in ``counts``, an int64 array of shape (K, K + 1): row = ground-truth class, columns 0..K-1
    = predicted class, column K = predicted "unlabeled" (255, or a model class with no ground-truth counterpart).
    For data-parallel evaluation either ``merge`` evaluators or all-reduce ``torch.from_numpy(evaluator.counts)``
    in place (it shares memory with the evaluator).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int = IGNORE_INDEX,
        class_names: Sequence[str] | None = None,
        class_mapping: np.ndarray | Sequence[int] | None = None,
    ) -> None:
        """Create an empty evaluator.

        Args:
            num_classes: K, the number of ground-truth classes (ids 0..K-1).
            ignore_index: ground-truth value of pixels that are not scored, in [K, 255].
            class_names: K names for the reports; defaults to ``class_0`` ... ``class_{K-1}``.
            class_mapping: optional (K_model,) lookup array, model class id -> ground-truth class id in [0, K) or
                255 when the model class has no counterpart. Without it, predictions are ground-truth ids.
        """
        if not 0 < num_classes < 255:
            raise ValueError(f"num_classes must be in [1, 254] (255 means unlabeled), got {num_classes}")
        if not num_classes <= ignore_index <= 255:
            raise ValueError(f"ignore_index must be in [num_classes={num_classes}, 255], got {ignore_index}")
        names = [f"class_{k}" for k in range(num_classes)] if class_names is None else [str(n) for n in class_names]
        if len(names) != num_classes:
            raise ValueError(f"got {len(names)} class names for num_classes={num_classes}; pass one name per class")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = names

        # Ground truth -> confusion-matrix row; the ignore value goes to an extra row K that is dropped.
        self._gt_lookup = np.full(256, -1, dtype=np.int64)
        self._gt_lookup[:num_classes] = np.arange(num_classes)
        self._gt_lookup[ignore_index] = num_classes
        # Prediction (ground-truth ids once mapped) -> confusion-matrix column; 255 goes to the "unlabeled" column K.
        self._pred_lookup = np.full(256, -1, dtype=np.int64)
        self._pred_lookup[:num_classes] = np.arange(num_classes)
        self._pred_lookup[IGNORE_INDEX] = num_classes
        self.class_mapping = None if class_mapping is None else _checked_mapping(class_mapping, num_classes)
        self.counts = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    @classmethod
    def for_class_table(
        cls,
        gt_table: ClassTable,
        *,
        model_table: ClassTable | None = None,
        renames: Mapping[str, str] | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> "SemSegEvaluator":
        """Evaluator for ground truth in ``gt_table``, mapping predictions by class name if the model's table differs.

        Args:
            gt_table: classes of the ground truth.
            model_table: classes of the model; None or equal names means predictions are ground-truth ids.
            renames: model name -> ground-truth name for differing names; defaults to the entry of
                ``KNOWN_RENAMES`` for the two table names (Cityscapes-19 and CamVid-11, either way round), else exact
                names only.
            ignore_index: ground-truth value of pixels that are not scored.
        """
        mapping = None
        if model_table is not None and model_table.names != gt_table.names:
            if renames is None:
                renames = KNOWN_RENAMES.get((model_table.name, gt_table.name))
            mapping = class_mapping_by_name(model_table, gt_table, renames=renames)
        return cls(
            gt_table.num_classes, ignore_index=ignore_index, class_names=gt_table.names, class_mapping=mapping
        )

    def reset(self) -> None:
        """Forget every processed pixel."""
        self.counts[...] = 0

    def process(
        self, pred_labels: np.ndarray | Sequence[np.ndarray], gt_labels: np.ndarray | Sequence[np.ndarray]
    ) -> None:
        """Add one frame or a batch of frames.

        Args:
            pred_labels: (H, W) or (B, H, W) integer predicted ids (model ids when a class_mapping is set),
                255 = unlabeled.
            gt_labels: same shape, integer ground-truth ids in [0, K), ``ignore_index`` = not scored.
        """
        pred = _as_label_batch(pred_labels)
        gt = _as_label_batch(gt_labels)
        if pred.shape != gt.shape:
            raise ValueError(
                f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}; resize the prediction "
                "to the label resolution (nearest neighbour) before scoring"
            )
        if self.class_mapping is not None:
            pred = map_predictions(pred, self.class_mapping)
        rows = _label_lookup(gt, self._gt_lookup, "ground truth", f"in [0, {self.num_classes}) or {self.ignore_index}")
        columns = _label_lookup(pred, self._pred_lookup, "prediction", f"in [0, {self.num_classes}) or 255")
        width = self.num_classes + 1
        # One bincount over row * (K + 1) + column fills the whole (K + 1, K + 1) table; row K (ignored GT) is dropped.
        flat = np.bincount((rows * width + columns).ravel(), minlength=width * width)
        self.counts += flat.reshape(width, width)[: self.num_classes]

    def merge(self, other: "SemSegEvaluator") -> None:
        """Add the counts of another evaluator of the same classes (e.g. from another data-parallel worker)."""
        if other.class_names != self.class_names or other.ignore_index != self.ignore_index:
            raise ValueError(
                f"cannot merge evaluators of different classes: {other.class_names} (ignore {other.ignore_index}) "
                f"into {self.class_names} (ignore {self.ignore_index})"
            )
        self.counts += other.counts

    @property
    def confusion_matrix(self) -> np.ndarray:
        """(K, K) int64, rows = ground truth, columns = prediction; "unlabeled" predictions are not in it."""
        return self.counts[:, : self.num_classes].copy()

    def evaluate(self) -> dict:
        """Scores of everything processed since the last ``reset``.

        Returns:
            ``miou``, ``miou_gt_present``, ``pixel_accuracy``, ``mean_accuracy``, ``fwiou`` (floats in [0, 1]);
            ``iou`` and ``accuracy`` ((K,) float64, NaN where undefined: IoU without GT and prediction, accuracy
            without GT); ``confusion_matrix`` ((K, K) int64); ``unlabeled_predictions`` ((K,) int64 per GT class);
            ``gt_pixels`` ((K,) int64); ``num_pixels`` (scored pixels); ``class_names``.
        """
        gt_pixels = self.counts.sum(axis=1)
        num_pixels = int(gt_pixels.sum())
        if num_pixels == 0:
            raise ValueError(
                "no scored pixel: process() was never called or every ground-truth pixel was "
                f"ignore_index={self.ignore_index}; check the label files and their class ids"
            )
        confusion = self.confusion_matrix
        true_positives = np.diag(confusion)
        predicted_pixels = confusion.sum(axis=0)
        union = gt_pixels + predicted_pixels - true_positives
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, true_positives / union, np.nan)
            accuracy = np.where(gt_pixels > 0, true_positives / gt_pixels, np.nan)
        present = gt_pixels > 0
        frequency = gt_pixels / num_pixels
        return {
            "miou": _nanmean(iou),
            "miou_gt_present": _nanmean(iou[present]),
            "iou": iou,
            "accuracy": accuracy,
            "pixel_accuracy": float(true_positives.sum() / num_pixels),
            "mean_accuracy": _nanmean(accuracy),
            "fwiou": float((frequency[present] * iou[present]).sum()),
            "confusion_matrix": confusion,
            "unlabeled_predictions": self.counts[:, self.num_classes].copy(),
            "gt_pixels": gt_pixels,
            "num_pixels": num_pixels,
            "class_names": list(self.class_names),
        }

    def to_json(self) -> dict:
        """``evaluate()`` as plain JSON types: per-class scores keyed by class name, NaN as None, arrays as lists."""
        results = self.evaluate()
        per_class = {
            name: {
                "iou": _json_float(results["iou"][k]),
                "accuracy": _json_float(results["accuracy"][k]),
                "gt_pixels": int(results["gt_pixels"][k]),
                "unlabeled_predictions": int(results["unlabeled_predictions"][k]),
            }
            for k, name in enumerate(self.class_names)
        }
        return {
            "miou": _json_float(results["miou"]),
            "miou_gt_present": _json_float(results["miou_gt_present"]),
            "pixel_accuracy": _json_float(results["pixel_accuracy"]),
            "mean_accuracy": _json_float(results["mean_accuracy"]),
            "fwiou": _json_float(results["fwiou"]),
            "num_pixels": results["num_pixels"],
            "class_names": results["class_names"],
            "per_class": per_class,
            "confusion_matrix": results["confusion_matrix"].tolist(),
            "class_mapping": None if self.class_mapping is None else self.class_mapping.tolist(),
        }


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN when there are none (without numpy's empty-slice warning)."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
