"""What every dataset shares: a list of (image file, label file, name) pairs, decoding, and label-id mapping.

A dataset subclass only finds its files in its on-disk layout; this base class decodes them:
``dataset[i]`` is ``{"image": (H, W, 3) uint8 RGB, "label": (H, W) uint8 train ids (255 = ignore), "name": str}``,
passed through ``transform`` when one is given. ``load_label(i)`` decodes only the label, for class statistics.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import Any
import warnings

import cv2
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from tqdm_core.classes import ClassTable

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]


@dataclass(frozen=True, eq=False)
class SampleFiles:
    """One image/label pair on disk.

    Attributes:
        image: path of the RGB image.
        label: path of the single-channel label image.
        name: identifier of the sample (the image file stem without dataset suffixes), unique in the dataset.
        label_table: (256,) uint8 table from the ids stored in ``label`` to train ids, 255 for ignored ids.
    """

    image: Path
    label: Path
    name: str
    label_table: np.ndarray = field(repr=False)


class UnreadableSampleError(ValueError):
    """A sample's image or label file cannot be decoded, or does not fit its pair; the message names the file.

    Raised with one string argument, so a DataLoader worker's copy of it keeps this type in the main process.
    """


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB.

    EXIF orientation is ignored on purpose: label images carry no EXIF tag, so rotating only the photo (some
    Mapillary JPEGs have the tag) would misalign it with its label. The bytes are decoded from memory rather than
    with `cv2.imread`, which returns the decoded part of a JPEG cut short (grey below it) without an error.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise UnreadableSampleError(f"could not read image '{path}': {error.strerror or error}") from error
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise UnreadableSampleError(f"could not decode image '{path}'; the file is truncated, corrupt or not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label_ids(path: Path) -> np.ndarray:
    """Decode a label image to (H, W) uint8 ids as stored in the file.

    PIL is used rather than OpenCV because GTA5 and Mapillary labels are palette PNGs: the palette index is the
    class id, and OpenCV would expand it to colours.
    """
    try:
        with Image.open(path) as label_image:
            mode = label_image.mode
            ids = np.asarray(label_image)
    except OSError as error:
        raise UnreadableSampleError(f"could not decode label image '{path}': {error}") from error
    if ids.ndim != 2:
        raise UnreadableSampleError(
            f"label '{path}' is a {mode} colour image; expected a single-channel image of class ids "
            "(8-bit grey or palette PNG). Colour-coded label images (e.g. BDD100K 'colormaps') cannot be read.")
    if ids.dtype != np.uint8:
        if ids.size and (ids.min() < 0 or ids.max() > 255):
            raise UnreadableSampleError(
                f"label '{path}' holds ids outside [0, 255] (mode {mode}); expected 8-bit class ids")
        ids = ids.astype(np.uint8)
    return ids


def list_files(directory: Path, suffixes: Iterable[str], *, recursive: bool = False) -> list[Path]:
    """Sorted files in ``directory`` whose names end with one of ``suffixes`` (case-insensitive)."""
    endings = tuple(suffix.lower() for suffix in suffixes)
    candidates = _walk_files(directory) if recursive else directory.glob("*")
    return sorted(path for path in candidates if path.name.lower().endswith(endings) and path.is_file())


def _walk_files(directory: Path) -> Iterable[Path]:
    """Every file below ``directory``, entering symlinked folders once each.

    Not ``glob("**/*")``: before Python 3.13 it skips symlinked folders, so a symlinked city or split folder would
    vanish from a dataset without an error. Real paths already visited are skipped, so a symlink loop ends.
    """
    visited: set[str] = set()
    for folder, subfolders, names in os.walk(directory, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            subfolders.clear()
            continue
        visited.add(real)
        yield from (Path(folder) / name for name in names)


def require_dir(directory: Path, layout: str) -> Path:
    """Return ``directory`` if it exists, else raise FileNotFoundError describing the expected ``layout``."""
    if not directory.is_dir():
        raise FileNotFoundError(f"directory '{directory}' does not exist; expected {layout}")
    return directory


def missing_labels_error(missing: Sequence[tuple[Path, Sequence[Path]]], total: int, layout: str) -> ValueError:
    """The error for images that have no label file: which images, which label files were looked for."""
    lines = [
        f"  {image} -> tried {', '.join(str(candidate) for candidate in candidates)}"
        for image, candidates in missing[:5]
    ]
    more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
    return ValueError(
        f"{len(missing)} of {total} images have no label file:\n" + "\n".join(lines) + more
        + f"\nexpected {layout}")


class SegmentationDataset(Dataset):
    """Image/label pairs decoded to RGB images and train-id labels.

    Args:
        samples: the image/label pairs, in a fixed order.
        class_table: classes the train ids refer to.
        transform: optional callable applied to each sample dict (e.g. ``TrainTransform``, ``EvalTransform``).
        resize_mismatched_images: when an image and its label differ in size, resize the image to the label
            (bilinear, with a warning naming both files) instead of raising ValueError. Only GTA5 needs this (a few
            of its images differ in size from their labels); the label is kept as it is, so it is scored exactly.
    """

    def __init__(self, samples: Sequence[SampleFiles], *, class_table: ClassTable, transform: Transform | None = None,
                 resize_mismatched_images: bool = False) -> None:
        self.samples = list(samples)
        self.class_table = class_table
        self.transform = transform
        self.resize_mismatched_images = resize_mismatched_images

    def __len__(self) -> int:
        return len(self.samples)

    def names(self) -> list[str]:
        """Sample names in index order."""
        return [sample.name for sample in self.samples]

    def label_paths(self) -> list[Path]:
        """Label files in index order (their ids are mapped by ``load_label``)."""
        return [sample.label for sample in self.samples]

    def load_label(self, index: int) -> np.ndarray:
        """(H, W) uint8 train ids of sample ``index``, 255 = ignore; decodes only the label file."""
        sample = self.samples[index]
        return sample.label_table[read_label_ids(sample.label)]

    def load_sample(self, index: int) -> Sample:
        """The decoded sample before any transform: ``{"image", "label", "name"}``."""
        sample = self.samples[index]
        image = read_image(sample.image)
        label = self.load_label(index)
        if image.shape[:2] != label.shape:
            sizes = (f"image '{sample.image}' is {image.shape[1]}x{image.shape[0]} but its label '{sample.label}' is "
                     f"{label.shape[1]}x{label.shape[0]}")
            if not self.resize_mismatched_images:
                raise UnreadableSampleError(f"{sizes}; image and label must have the same size")
            # Python's default warning filter shows each file's warning once per process (or DataLoader worker).
            warnings.warn(f"{sizes}; the image is resized to the label's size (a few GTA5 frames have this mismatch)",
                          stacklevel=2)
            image = cv2.resize(image, (label.shape[1], label.shape[0]), interpolation=cv2.INTER_LINEAR)
        return {"image": image, "label": label, "name": sample.name}

    def __getitem__(self, index: int) -> Sample:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples, classes={self.class_table.name})"
