"""Scoring segmentations: confusion-matrix metrics (mIoU and friends), confidence calibration, the frame scorer
every evaluation feeds, and its report (JSON, summary, figures).

``figures`` is not imported here: it needs matplotlib, which only report writers load (lazily).
"""
from tqdm_core.evaluation.calibration import CalibrationAccumulator, CalibrationResult
from tqdm_core.evaluation.report import EvaluationReport, ModelInfo, format_summary, write_report, write_report_files
from tqdm_core.evaluation.scoring import (
    DroppedFrame,
    EvaluationError,
    FrameScorer,
    LabeledImage,
    ScoredFrame,
    predicted_frames,
    score_frames,
)
from tqdm_core.evaluation.sem_seg_evaluator import (
    CAMVID_TO_CITYSCAPES_NAMES,
    CITYSCAPES_TO_CAMVID_NAMES,
    KNOWN_RENAMES,
    SemSegEvaluator,
    class_mapping_by_name,
    classes_without_counterpart,
    map_predictions,
)

__all__ = [
    "CAMVID_TO_CITYSCAPES_NAMES",
    "CITYSCAPES_TO_CAMVID_NAMES",
    "KNOWN_RENAMES",
    "CalibrationAccumulator",
    "CalibrationResult",
    "DroppedFrame",
    "EvaluationError",
    "EvaluationReport",
    "FrameScorer",
    "LabeledImage",
    "ModelInfo",
    "ScoredFrame",
    "SemSegEvaluator",
    "class_mapping_by_name",
    "classes_without_counterpart",
    "format_summary",
    "map_predictions",
    "predicted_frames",
    "score_frames",
    "write_report",
    "write_report_files",
]
