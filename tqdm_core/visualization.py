"""Label maps and confidences as pictures (numpy + OpenCV only, fast enough for a ROS node at 1024x512).

Every colour image here is RGB uint8 (H, W, 3). Colouring goes through 256-entry lookup tables, so the cost per
frame is one table lookup, not a loop over classes. Label 255 ("unlabeled") and ids beyond the class table are
drawn black, and ``overlay`` leaves those pixels as they are in the camera image.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from tqdm_core.classes import ClassTable


@functools.lru_cache(maxsize=16)
def _lookup_tables(class_table: ClassTable) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables of one class table, built once per table.

    Returns:
        (1, 256, 3) uint8 palette for ``cv2.LUT`` (black for 255 and unused ids) and a (256,) uint8 mask table,
        255 for ids without a class, 0 for class ids.
    """
    palette = class_table.palette().reshape(1, 256, 3)  # (256, 3) -> (1, 256, 3), the layout cv2.LUT expects
    unlabeled = np.full(256, 255, dtype=np.uint8)
    unlabeled[: class_table.num_classes] = 0
    return palette, unlabeled


def _colours(labels: np.ndarray, class_table: ClassTable) -> np.ndarray:
    """(H, W) uint8 ids -> (H, W, 3) uint8 colours; cv2.LUT is about 10x faster than numpy fancy indexing here."""
    palette, _ = _lookup_tables(class_table)
    return cv2.LUT(cv2.cvtColor(labels, cv2.COLOR_GRAY2RGB), palette)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(
            f"labels must be a (H, W) uint8 class-id image, got shape {labels.shape} and dtype {labels.dtype}; "
            "convert with labels.astype(np.uint8) after checking ids are in [0, 255]"
        )
    return labels


def _check_image(image_rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    image_rgb = np.asarray(image_rgb)
    if image_rgb.dtype != np.uint8 or image_rgb.shape != (*labels.shape, 3):
        raise ValueError(
            f"image must be (H, W, 3) uint8 RGB matching the labels' (H, W) = {labels.shape}, got shape "
            f"{image_rgb.shape} and dtype {image_rgb.dtype}; resize the labels to the image (nearest neighbour)"
        )
    return image_rgb


def colorize_labels(labels: np.ndarray, class_table: ClassTable) -> np.ndarray:
    """Paint each class id with its class colour.

    Args:
        labels: (H, W) uint8 class ids; 255 and ids without a class are painted black.
        class_table: names and colours of the classes.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    return _colours(_check_labels(labels), class_table)


def overlay(image_rgb: np.ndarray, labels: np.ndarray, class_table: ClassTable, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over a camera image; unlabeled pixels (255 or unknown ids) keep the image.

    Args:
        image_rgb: (H, W, 3) uint8 RGB camera image.
        labels: (H, W) uint8 class ids.
        class_table: names and colours of the classes.
        alpha: weight of the class colour in [0, 1] (0 = image only, 1 = colours only).

    Returns:
        (H, W, 3) uint8 RGB image, ``round((1 - alpha) * image + alpha * colour)`` on labelled pixels.
    """
    labels = _check_labels(labels)
    image_rgb = _check_image(image_rgb, labels)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = cv2.addWeighted(image_rgb, 1.0 - alpha, _colours(labels, class_table), alpha, 0.0)
    _, unlabeled = _lookup_tables(class_table)
    cv2.copyTo(image_rgb, cv2.LUT(labels, unlabeled), blended)  # unlabeled pixels: back to the camera image
    return blended


def confidence_to_image(confidence: np.ndarray) -> np.ndarray:
    """Confidence map as a grey image (0 -> black, 1 -> white).

    Args:
        confidence: (H, W) float confidences in [0, 1]; values outside are clipped, NaN is drawn black.

    Returns:
        (H, W) uint8, ``round(255 * confidence)``.
    """
    confidence = np.asarray(confidence)
    if confidence.ndim != 2 or not np.issubdtype(confidence.dtype, np.floating):
        raise ValueError(
            f"confidence must be a (H, W) float array in [0, 1], got shape {confidence.shape} and dtype "
            f"{confidence.dtype}"
        )
    scaled = np.nan_to_num(confidence.astype(np.float32, copy=False) * 255.0, nan=0.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def confidence_to_colormap(confidence: np.ndarray, colormap: int = cv2.COLORMAP_VIRIDIS) -> np.ndarray:
    """Confidence map through an OpenCV colour map (default viridis: dark blue = 0, yellow = 1).

    Args:
        confidence: (H, W) float confidences in [0, 1].
        colormap: an OpenCV ``cv2.COLORMAP_*`` constant.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    bgr = cv2.applyColorMap(confidence_to_image(confidence), colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def legend_image(
    class_table: ClassTable, *, swatch_size: int = 20, column_width: int = 180, num_columns: int = 1
) -> np.ndarray:
    """A legend: one colour swatch and class name per class, filled column by column.

    Args:
        class_table: names and colours of the classes.
        swatch_size: side of each colour square and height of each row, in pixels.
        column_width: width of one swatch + name column, in pixels.
        num_columns: number of columns.

    Returns:
        (rows * (swatch_size + 4) + 4, num_columns * column_width, 3) uint8 RGB image on a white background,
        with rows = ceil(num_classes / num_columns).
    """
    if swatch_size < 8 or column_width < swatch_size + 8 or num_columns < 1:
        raise ValueError(
            f"legend needs swatch_size >= 8, column_width >= swatch_size + 8 and num_columns >= 1, got "
            f"{swatch_size}, {column_width}, {num_columns}"
        )
    row_height = swatch_size + 4
    num_rows = -(-class_table.num_classes // num_columns)
    legend = np.full((num_rows * row_height + 4, num_columns * column_width, 3), 255, dtype=np.uint8)
    font_scale = swatch_size / 36.0
    for class_id, (name, colour) in enumerate(zip(class_table.names, class_table.colors)):
        column, row = divmod(class_id, num_rows)
        x, y = column * column_width + 4, row * row_height + 4
        cv2.rectangle(legend, (x, y), (x + swatch_size - 1, y + swatch_size - 1), tuple(int(c) for c in colour), -1)
        cv2.rectangle(legend, (x, y), (x + swatch_size - 1, y + swatch_size - 1), (0, 0, 0), 1)
        baseline = y + swatch_size - max(2, swatch_size // 4)
        cv2.putText(
            legend, f"{class_id} {name}", (x + swatch_size + 4, baseline), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
            (0, 0, 0), 1, cv2.LINE_AA,
        )
    return legend
