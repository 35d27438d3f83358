"""Evaluation reports: the same folder for every evaluation (dataset, bag offline, bag live).

A report folder holds ``report.json`` (every number), ``summary.md`` (one screen for people), and
``overlays.png``, ``confusion_matrix.png``, ``per_class_iou.png``, ``reliability.png`` and ``latency.png``.
`write_report` builds it in a hidden staging folder and renames it into place at the end, so it either holds a
complete report or does not exist.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tqdm_core.classes import ClassTable
from tqdm_core.evaluation.calibration import CalibrationResult
from tqdm_core.evaluation.figures import OverlayFrame
from tqdm_core.evaluation.sem_seg_evaluator import SemSegEvaluator, classes_without_counterpart
from tqdm_core.staged_output import staged_path

REPORT_JSON = "report.json"
SUMMARY_MD = "summary.md"
PICTURES = {
    "overlays": "overlays.png",
    "confusion_matrix": "confusion_matrix.png",
    "per_class_iou": "per_class_iou.png",
    "reliability": "reliability.png",
    "latency": "latency.png",
}
LATENCY_PERCENTILES = (50, 90, 95, 99)
UNTRAINED_WARNING = ("the model is untrained (random weights): its segmentation is not meaningful and the scores "
                     "only show that the pipeline runs")


@dataclass(frozen=True)
class ModelInfo:
    """What produced the predictions.

    Attributes:
        name: preset name (or the node's class-table name when only that is known).
        source: checkpoint path, ``preset <name> with random weights``, or the node's namespace.
        trained: True for a trained checkpoint, False for random weights, None when unknown (a running node
            evaluated live reports no such thing).
        details: further facts, e.g. ``Predictor.describe()``.
    """

    name: str
    source: str
    trained: bool | None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FrameRecord:
    """What became of one frame of the source.

    Attributes:
        name: how the report names it (file name, ``stamp 12.345678901 s``).
        source_file: the image file a bag frame was made from, when known (maps a stamp back to its file).
        scored: True when it got a prediction and was scored, False when it was dropped.
        latency_ms: its latency (see `EvaluationReport.latency_kind`), None when dropped or not known.
    """

    name: str
    source_file: str | None
    scored: bool
    latency_ms: float | None

    def to_json(self) -> dict:
        return {"name": self.name, "source_file": self.source_file, "scored": self.scored,
                "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class EvaluationReport:
    """Everything a report shows, computed by `tqdm_core.evaluation.scoring.FrameScorer`.

    Attributes:
        mode: "offline" (a Predictor on every frame) or "live" (a running node).
        source: what was evaluated: a dataset label (``camvid_val``) or a bag path.
        model: what produced the predictions.
        ground_truth_classes: class table of the ground truth.
        model_classes: class table of the predictions.
        evaluator: the confusion matrix of every scored frame.
        calibration: reliability bins and ECE of the scored pixels.
        latencies_ms: (N,) ms, one per scored frame whose latency is known; offline: Predictor time, live: label
            arrival minus frame publication.
        latency_kind: what `latencies_ms` measures, in words.
        frames_total: frames with ground truth in the source.
        frames_scored: frames with a prediction, scored.
        dropped: names of the frames that got no prediction.
        overlays: example frames for the overlay grid.
        notes: warnings shown at the top of the summary (e.g. an untrained model).
        run: how the evaluation ran (wall time, replay rate, ...).
        frame_records: every frame of the source in stream order: scored or dropped, its file when known.
        model_time_p50_ms: median model time per frame in ms when the latencies measure more than the model (live:
            the node's own figure from /diagnostics); None when not known or when the latencies are model time.
    """

    mode: str
    source: str
    model: ModelInfo
    ground_truth_classes: ClassTable
    model_classes: ClassTable
    evaluator: SemSegEvaluator
    calibration: CalibrationResult
    latencies_ms: np.ndarray
    latency_kind: str
    frames_total: int
    frames_scored: int
    dropped: tuple[str, ...]
    overlays: tuple[OverlayFrame, ...]
    notes: tuple[str, ...] = ()
    run: dict = field(default_factory=dict)
    frame_records: tuple[FrameRecord, ...] = ()
    model_time_p50_ms: float | None = None

    @property
    def title(self) -> str:
        """Short name for picture titles: the dataset label or the bag folder name, and the mode."""
        return f"{Path(self.source).name} ({self.mode})"

    def latency_summary(self) -> dict:
        """Count, mean, max and the p50/p90/p95/p99 percentiles in ms (only the count if empty)."""
        if not self.latencies_ms.size:
            return {"count": 0}
        percentiles = np.percentile(self.latencies_ms, LATENCY_PERCENTILES)
        return {"count": int(self.latencies_ms.size), "mean": float(self.latencies_ms.mean()),
                "max": float(self.latencies_ms.max()),
                **{f"p{p}": float(value) for p, value in zip(LATENCY_PERCENTILES, percentiles)}}

    def to_json(self) -> dict:
        """The report as plain JSON types (the content of report.json)."""
        return {
            "mode": self.mode,
            "source": self.source,
            "model": {"name": self.model.name, "source": self.model.source, "trained": self.model.trained,
                      "details": {key: _plain(value) for key, value in self.model.details.items()}},
            "notes": list(self.notes),
            "classes": {"ground_truth": self.ground_truth_classes.to_dict(), "model": self.model_classes.to_dict(),
                        "without_counterpart": classes_without_counterpart(
                            self.model_classes.names, self.ground_truth_classes.names, self.evaluator.class_mapping)},
            "frames": {"total": self.frames_total, "scored": self.frames_scored, "dropped": len(self.dropped),
                       "dropped_frames": list(self.dropped)},
            "per_frame": [record.to_json() for record in self.frame_records],
            "metrics": self.evaluator.to_json(),
            "calibration": self.calibration.to_json(),
            "latency_ms": {"kind": self.latency_kind, **self.latency_summary(), "values": self.latencies_ms.tolist()},
            "model_time_p50_ms": self.model_time_p50_ms,
            "run": {key: _plain(value) for key, value in self.run.items()},
            "pictures": self.pictures(),
        }

    def overlay_count(self) -> str:
        """How many frames the overlay grid shows, e.g. ``4 of 6 frames``."""
        return f"{len(self.overlays)} of {self.frames_total} frames"

    def pictures(self) -> dict[str, str]:
        """Picture name -> file name; no overlay grid without example frames, no histogram without latencies."""
        return {name: file for name, file in PICTURES.items()
                if (name != "latency" or self.latencies_ms.size) and (name != "overlays" or self.overlays)}


def format_summary(report: EvaluationReport) -> str:
    """A short markdown summary: warnings, scores, frames, latency, per-class IoU."""
    scores = report.evaluator.evaluate()
    latency = report.latency_summary()
    lines = [f"# Segmentation evaluation ({report.mode})", ""]
    lines += [f"**WARNING: {note}.**" for note in report.notes]
    if report.notes:
        lines.append("")
    lines += [
        f"- source: `{report.source}`",
        f"- model: {report.model.name} from {report.model.source}" + (" (untrained)" if report.model.trained is False
                                                                      else ""),
        f"- classes: model {report.model_classes.name} ({report.model_classes.num_classes}), ground truth "
        f"{report.ground_truth_classes.name} ({report.ground_truth_classes.num_classes})",
        f"- frames: {report.frames_scored} scored of {report.frames_total} with ground truth, {len(report.dropped)} "
        f"dropped",
        "",
        "| metric | value |",
        "|---|---|",
        f"| mIoU | {_percent(scores['miou'])} % |",
        f"| pixel accuracy | {_percent(scores['pixel_accuracy'])} % |",
        f"| mean accuracy | {_percent(scores['mean_accuracy'])} % |",
        f"| calibration ECE | {100 * report.calibration.ece:.2f} % |",
    ]
    if latency["count"]:
        lines.append(f"| latency p50 / p95 / max | {latency['p50']:.1f} / {latency['p95']:.1f} / "
                     f"{latency['max']:.1f} ms ({report.latency_kind}) |")
    if report.model_time_p50_ms is not None:
        lines += [f"| model time p50 | {report.model_time_p50_ms:.1f} ms (the node's own median on /diagnostics, "
                  "warm-up frame included) |",
                  "", f"Latency ({report.latency_kind}) is the whole round trip: transport to and from the node, "
                  "waiting for its worker, decoding and publishing, and the model time."]
    lines += ["", "| class | IoU % | ground-truth pixels |", "|---|---|---|"]
    lines += [f"| {name} | {_percent(iou)} | {pixels} |"
              for name, iou, pixels in zip(scores["class_names"], scores["iou"], scores["gt_pixels"])]
    pictures = [f"[{name}]({file})" + (f" ({report.overlay_count()})" if name == "overlays" else "")
                for name, file in report.pictures().items()]
    lines += ["", "Pictures: " + ", ".join(pictures), ""]
    return "\n".join(lines)


def write_report_files(report: EvaluationReport, folder: str | Path) -> None:
    """Write the JSON, the summary and the pictures into an existing folder.

    Use `write_report` unless the folder is itself being staged (a live bag evaluation stages one folder for the
    node's recorded outputs and the report).
    """
    from tqdm_core.evaluation import figures

    folder = Path(folder)
    scores = report.evaluator.evaluate()
    names = scores["class_names"]
    untrained = " [UNTRAINED MODEL]" if report.model.trained is False else ""
    pictures = report.pictures()
    figures.plot_per_class_iou(scores["iou"], names, folder / pictures["per_class_iou"],
                               colors=report.ground_truth_classes.colors,
                               title=f"Per-class IoU, {report.title}{untrained}")
    figures.plot_confusion_matrix(scores["confusion_matrix"], names, folder / pictures["confusion_matrix"],
                                  unlabeled_predictions=scores["unlabeled_predictions"],
                                  title=f"Confusion matrix, rows normalised{untrained}")
    figures.plot_reliability_diagram(report.calibration, folder / pictures["reliability"],
                                     title=f"Reliability, {report.title}{untrained}")
    if "latency" in pictures:
        figures.plot_latency_histogram(report.latencies_ms, folder / pictures["latency"],
                                       title=f"Latency: {report.latency_kind}")
    if "overlays" in pictures:
        figures.plot_overlay_grid(report.overlays, folder / pictures["overlays"],
                                  prediction_table=report.model_classes,
                                  ground_truth_table=report.ground_truth_classes,
                                  title=f"Example frames, {report.title}{untrained}: showing {report.overlay_count()}")
    (folder / SUMMARY_MD).write_text(format_summary(report))
    (folder / REPORT_JSON).write_text(json.dumps(report.to_json(), indent=2))


def write_report(report: EvaluationReport, output: str | Path) -> Path:
    """Write a report folder at `output` (which must not exist) atomically; return its path.

    Raises:
        FileExistsError: `output` exists.
    """
    output = Path(output)
    with staged_path(output) as staging:
        staging.mkdir()
        write_report_files(report, staging)
    return output


def _plain(value):
    """A JSON-safe copy of a scalar (numpy numbers, paths and NaN included) or of a dict of them."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"
