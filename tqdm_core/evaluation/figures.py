"""Report pictures: per-class IoU bars, confusion matrix, reliability diagram, latency histogram, overlay grid.

Each function draws one PNG of exactly ``size_px`` (width, height) pixels and returns nothing. The parent folder is
created, and the file is written to a temporary name in the same folder and then renamed, so a reader never sees a
half-written picture. matplotlib is imported only when a figure is drawn, and only through ``matplotlib.figure``
(the Agg renderer, no pyplot): no display is needed and no global figure state is touched, so it is thread-safe.
"""
from __future__ import annotations

import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tqdm_core.classes import IGNORE_INDEX, ClassTable
from tqdm_core.evaluation.calibration import CalibrationResult
from tqdm_core.visualization import colorize_labels, confidence_to_colormap

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class OverlayFrame:
    """One row of an overlay grid.

    Attributes:
        image: (H, W, 3) uint8 RGB camera image.
        prediction: (H, W) uint8 predicted ids of the prediction table, 255 = unlabeled.
        confidence: (H, W) float confidence in [0, 1], or None (the panel is left blank).
        ground_truth: (H, W) uint8 ground-truth ids, 255 = ignore, or None when the frame has no labels.
        title: text above the row's input panel (file name, stamp), or empty.
    """

    image: np.ndarray
    prediction: np.ndarray
    confidence: np.ndarray | None = None
    ground_truth: np.ndarray | None = None
    title: str = ""


def _new_figure(size_px: tuple[int, int], dpi: int) -> "Figure":
    """A constrained-layout figure of exactly ``size_px`` = (width, height) pixels at ``dpi``."""
    from matplotlib.figure import Figure

    width, height = size_px
    if width < 100 or height < 100 or dpi < 10:
        raise ValueError(f"figure size must be at least 100x100 px at dpi >= 10, got {size_px} at dpi {dpi}")
    return Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")


def _save_atomically(figure: "Figure", path: str | os.PathLike, dpi: int) -> None:
    """Write ``figure`` as a PNG at ``path``: temporary file in the same folder, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name next to the target (same file system, so the rename is atomic); opened with "xb" rather than
    # mkstemp so the picture gets the usual umask permissions instead of 0600.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as stream:
            figure.savefig(stream, format="png", dpi=dpi)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _rgb_fraction(colour: Sequence[int]) -> tuple[float, float, float]:
    """(R, G, B) in [0, 255] -> matplotlib's [0, 1] floats."""
    return tuple(channel / 255.0 for channel in colour)


def plot_per_class_iou(
    iou: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    colors: Sequence[Sequence[int]] | None = None,
    title: str = "Per-class IoU",
    size_px: tuple[int, int] = (1200, 600),
    dpi: int = 100,
) -> None:
    """Bar chart of per-class IoU in percent, with the mIoU as a dashed line; NaN classes are marked "n/a".

    Args:
        iou: (K,) IoU per class in [0, 1], NaN where undefined (``SemSegEvaluator.evaluate()["iou"]``).
        class_names: K class names.
        path: output PNG path.
        colors: optional K (R, G, B) colours in [0, 255] for the bars (e.g. ``ClassTable.colors``).
        title: figure title; the mIoU is appended.
        size_px: (width, height) of the PNG in pixels.
        dpi: resolution used to lay out text.
    """
    iou = np.asarray(iou, dtype=np.float64)
    if iou.ndim != 1 or len(iou) != len(class_names) or (colors is not None and len(colors) != len(iou)):
        raise ValueError(
            f"need one IoU, one name (and one colour, if given) per class, got {iou.shape} IoUs, "
            f"{len(class_names)} names and {None if colors is None else len(colors)} colours"
        )
    defined = ~np.isnan(iou)
    mean_iou = float(iou[defined].mean()) if defined.any() else math.nan
    figure = _new_figure(size_px, dpi)
    axes = figure.add_subplot()
    positions = np.arange(len(iou))
    bar_colors = [_rgb_fraction(c) for c in colors] if colors is not None else "tab:blue"
    bars = axes.bar(positions, np.nan_to_num(iou) * 100.0, color=bar_colors, edgecolor="black", linewidth=0.5)
    for bar, value in zip(bars, iou):
        label = "n/a" if math.isnan(value) else f"{100.0 * value:.1f}"
        axes.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                      fontsize=8, xytext=(0, 2), textcoords="offset points")
    if defined.any():
        axes.axhline(100.0 * mean_iou, color="black", linestyle="--", linewidth=1, label=f"mIoU {100 * mean_iou:.1f}")
        axes.legend(loc="upper right")
    axes.set_xticks(positions, list(class_names), rotation=45, ha="right")
    axes.set_ylim(0, 105)
    axes.set_ylabel("IoU (%)")
    axes.set_title(f"{title} (mIoU {100 * mean_iou:.1f}%)" if defined.any() else title)
    axes.grid(axis="y", alpha=0.3)
    _save_atomically(figure, path, dpi)


def plot_confusion_matrix(
    confusion: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    unlabeled_predictions: np.ndarray | None = None,
    title: str = "Confusion matrix (rows: ground truth, normalised per row)",
    size_px: tuple[int, int] = (1000, 900),
    dpi: int = 100,
) -> None:
    """Heatmap of the row-normalised confusion matrix: cell (i, j) = share of class-i pixels predicted as j.

    Args:
        confusion: (K, K) counts, rows = ground truth, columns = prediction.
        class_names: K class names, used on both axes.
        path: output PNG path.
        unlabeled_predictions: optional (K,) count of pixels of each ground-truth class predicted as unlabeled
            (255); when any is non-zero they form an extra "unlabeled" column, so every row sums to 100%.
        title: figure title.
        size_px: (width, height) of the PNG in pixels.
        dpi: resolution used to lay out text.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    num_classes = len(class_names)
    if confusion.shape != (num_classes, num_classes):
        raise ValueError(
            f"confusion matrix must be ({num_classes}, {num_classes}) to match the class names, got {confusion.shape}"
        )
    column_names = list(class_names)
    if unlabeled_predictions is not None and np.any(unlabeled_predictions):
        unlabeled = np.asarray(unlabeled_predictions, dtype=np.float64).reshape(num_classes, 1)
        confusion = np.concatenate([confusion, unlabeled], axis=1)  # (K, K) -> (K, K + 1)
        column_names.append("unlabeled")
    row_sums = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, row_sums, out=np.zeros_like(confusion), where=row_sums > 0)
    figure = _new_figure(size_px, dpi)
    axes = figure.add_subplot()
    image = axes.imshow(normalised * 100.0, cmap="Blues", vmin=0.0, vmax=100.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, label="% of ground-truth pixels", shrink=0.8)
    if num_classes <= 25:  # cell numbers stop being legible beyond that
        for (row, column), value in np.ndenumerate(normalised):
            if value >= 0.005:
                axes.text(column, row, f"{100.0 * value:.0f}", ha="center", va="center", fontsize=7,
                          color="white" if value > 0.5 else "black")
    axes.set_xticks(np.arange(len(column_names)), column_names, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(np.arange(num_classes), list(class_names), fontsize=8)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    axes.set_title(title)
    _save_atomically(figure, path, dpi)


def plot_reliability_diagram(
    calibration: CalibrationResult,
    path: str | os.PathLike,
    *,
    title: str = "Reliability diagram",
    size_px: tuple[int, int] = (700, 800),
    dpi: int = 100,
) -> None:
    """Accuracy per confidence bin against the diagonal of perfect calibration, and the pixel share per bin.

    Args:
        calibration: result of ``CalibrationAccumulator.result()``.
        path: output PNG path.
        title: figure title; ECE and MCE are appended.
        size_px: (width, height) of the PNG in pixels.
        dpi: resolution used to lay out text.
    """
    edges = calibration.bin_edges
    centres, widths = (edges[:-1] + edges[1:]) / 2.0, np.diff(edges)
    filled = calibration.bin_counts > 0
    figure = _new_figure(size_px, dpi)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centres[filled], calibration.bin_accuracy[filled], width=widths[filled], color="tab:blue",
            edgecolor="black", linewidth=0.5, label="accuracy")
    gap = calibration.bin_confidence[filled] - calibration.bin_accuracy[filled]
    # Hatched and unfilled, so the gap stays readable where it lies inside an accuracy bar (under-confidence).
    top.bar(centres[filled], gap, bottom=calibration.bin_accuracy[filled], width=widths[filled], fill=False,
            hatch="//", edgecolor="tab:red", linewidth=0.8, label="gap to mean confidence")
    top.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left")
    top.set_title(f"{title}\nECE {100 * calibration.ece:.2f}%, MCE {100 * calibration.mce:.2f}%, "
                  f"{calibration.num_samples:,} pixels")
    bottom.bar(centres, calibration.bin_counts / calibration.num_samples * 100.0, width=widths, color="gray",
               edgecolor="black", linewidth=0.5)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("% of pixels")
    _save_atomically(figure, path, dpi)


def plot_latency_histogram(
    latencies_ms: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "Latency",
    size_px: tuple[int, int] = (900, 500),
    dpi: int = 100,
) -> None:
    """Histogram of per-frame latencies with the median (p50) and the 95th percentile (p95) marked.

    Args:
        latencies_ms: (N,) latencies in milliseconds, N >= 1, all finite.
        path: output PNG path.
        title: figure title; the frame count and mean are appended.
        size_px: (width, height) of the PNG in pixels.
        dpi: resolution used to lay out text.
    """
    latencies = np.asarray(latencies_ms, dtype=np.float64).ravel()
    if latencies.size == 0 or not np.isfinite(latencies).all():
        raise ValueError(f"need at least one finite latency, got {latencies.size} values "
                         f"({int((~np.isfinite(latencies)).sum())} not finite)")
    p50, p95 = np.percentile(latencies, [50, 95])
    figure = _new_figure(size_px, dpi)
    axes = figure.add_subplot()
    axes.hist(latencies, bins=min(50, max(10, latencies.size // 5)), color="tab:blue", edgecolor="black",
              linewidth=0.5)
    axes.axvline(p50, color="tab:green", linewidth=2, label=f"p50 {p50:.1f} ms")
    axes.axvline(p95, color="tab:red", linewidth=2, linestyle="--", label=f"p95 {p95:.1f} ms")
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("frames")
    axes.set_title(f"{title} ({latencies.size} frames, mean {latencies.mean():.1f} ms)")
    axes.legend(loc="upper right")
    axes.grid(alpha=0.3)
    _save_atomically(figure, path, dpi)


def plot_overlay_grid(
    frames: Sequence[OverlayFrame],
    path: str | os.PathLike,
    *,
    prediction_table: ClassTable,
    ground_truth_table: ClassTable | None = None,
    title: str = "",
    panel_width_px: int = 320,
    size_px: tuple[int, int] | None = None,
    dpi: int = 100,
) -> None:
    """One row per frame: input | ground truth | prediction | confidence, with a class legend underneath.

    The confidence panels share a colour bar; ground-truth void (255, not scored) is black and named in the legend.

    Args:
        frames: the rows (at least one); every frame's arrays share its (H, W).
        path: output PNG path.
        prediction_table: classes of the predictions.
        ground_truth_table: classes of the ground truth when they differ (e.g. CamVid labels under a Cityscapes
            model); a second legend is drawn for them. Defaults to ``prediction_table``.
        title: figure title (e.g. which frames of how many are shown), or empty.
        panel_width_px: approximate width of one panel when ``size_px`` is not given.
        size_px: (width, height) of the PNG; by default four panels wide and tall enough for the rows and legend.
        dpi: resolution used to lay out text.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    if not frames:
        raise ValueError("the overlay grid needs at least one frame")
    ground_truth_table = ground_truth_table or prediction_table
    for index, frame in enumerate(frames):
        height, width = frame.prediction.shape[:2]
        for name in ("image", "confidence", "ground_truth"):
            value = getattr(frame, name)
            if value is not None and value.shape[:2] != (height, width):
                raise ValueError(f"frame {index}: {name} is {value.shape[:2]} but the prediction is {(height, width)}")
    legend_tables = [prediction_table] if ground_truth_table == prediction_table else [
        prediction_table, ground_truth_table]
    has_void = any(frame.ground_truth is not None and (frame.ground_truth == IGNORE_INDEX).any() for frame in frames)
    # Legend entries per table; the ground truth's (the last table) names the void colour when there is void.
    entries = [table.num_classes for table in legend_tables]
    entries[-1] += int(has_void)
    width_px = 4 * panel_width_px if size_px is None else size_px[0]
    legend_columns = max(1, min(6, width_px // 140))  # a legend entry needs about 140 px at font size 8
    # Heights in pixels at the requested width: image rows (panel + title line), legends (18 px a line + heading).
    frame_height, frame_width = frames[0].prediction.shape[:2]
    image_row_px = width_px / 4 * frame_height / frame_width + 30
    legend_px = [18.0 * math.ceil(count / legend_columns) + 40.0 for count in entries]
    if size_px is None:
        size_px = (width_px, int(len(frames) * image_row_px + sum(legend_px) + (30 if title else 0)))
    figure = _new_figure(size_px, dpi)
    if title:
        figure.suptitle(title, fontsize=10)
    grid = figure.add_gridspec(
        len(frames) + len(legend_tables), 4, height_ratios=[image_row_px] * len(frames) + legend_px
    )
    confidence_axes = []
    for row, frame in enumerate(frames):
        panels = [
            (frame.image, frame.title or "input"),
            (None if frame.ground_truth is None else colorize_labels(frame.ground_truth, ground_truth_table),
             "ground truth" if frame.ground_truth is not None else "no ground truth"),
            (colorize_labels(frame.prediction, prediction_table), "prediction"),
            (None if frame.confidence is None else confidence_to_colormap(frame.confidence), "confidence (0 to 1)"),
        ]
        for column, (picture, label) in enumerate(panels):
            axes = figure.add_subplot(grid[row, column])
            axes.set_axis_off()
            axes.set_title(label, fontsize=9)
            if picture is not None:
                axes.imshow(picture, interpolation="nearest")
                if column == 3:
                    confidence_axes.append(axes)
    if confidence_axes:
        # The panels are drawn through OpenCV's viridis (`confidence_to_colormap`), which matplotlib's matches.
        figure.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap="viridis"), ax=confidence_axes,
                        label="confidence", fraction=0.05, shrink=0.9)
    for offset, table in enumerate(legend_tables):
        axes = figure.add_subplot(grid[len(frames) + offset, :])
        axes.set_axis_off()
        handles = [Patch(facecolor=_rgb_fraction(colour), edgecolor="black", label=name)
                   for name, colour in zip(table.names, table.colors)]
        if has_void and offset == len(legend_tables) - 1:
            handles.append(Patch(facecolor="black", edgecolor="black", label="void (not scored)"))
        heading = "classes" if len(legend_tables) == 1 else (
            "prediction classes" if table is prediction_table else "ground-truth classes")
        axes.legend(handles=handles, loc="center", ncol=legend_columns, fontsize=8, frameon=False, title=heading,
                    title_fontsize=9)
    _save_atomically(figure, path, dpi)
