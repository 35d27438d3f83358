"""Scoring segmentations: confusion-matrix metrics (mIoU and friends), confidence calibration, report figures.

``figures`` is not imported here: it needs matplotlib, which only report writers load (lazily).
"""
from tqdm_core.evaluation.calibration import CalibrationAccumulator, CalibrationResult
from tqdm_core.evaluation.sem_seg_evaluator import (
    CITYSCAPES_TO_CAMVID_NAMES,
    KNOWN_RENAMES,
    SemSegEvaluator,
    class_mapping_by_name,
    map_predictions,
)

__all__ = [
    "CITYSCAPES_TO_CAMVID_NAMES",
    "KNOWN_RENAMES",
    "CalibrationAccumulator",
    "CalibrationResult",
    "SemSegEvaluator",
    "class_mapping_by_name",
    "map_predictions",
]
