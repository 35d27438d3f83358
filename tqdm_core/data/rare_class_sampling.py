"""Rare-class sampling (RCS, from DAFormer) as the official tqdm recipe uses it (METHOD.md 7.2; section 11, item 10).

Every training sample is drawn as follows; the dataset index only seeds the draw:

1. pick a class ``c`` with probability ``p(c) ∝ exp((1 - f_c) / T)``, ``f_c`` the share of class ``c`` among all
   labelled pixels of the dataset and ``T = class_temp`` (100 in the tqdm configs, which is nearly class-uniform;
   DAFormer's default 0.01 strongly favours rare classes);
2. pick uniformly one of the images holding more than ``min_pixels`` pixels of ``c``;
3. augment it; while the crop holds no more than ``min_pixels * min_crop_ratio`` pixels of ``c``, draw a new crop
   of the same image, at most ``max_crop_redraws`` times.

The per-image class pixel counts are computed here from the labels (decoding only the label files) and cached as
JSON at a path of the user's choice, because the official preprocessing scripts that write them are not part of
this project. The official ``sample_class_stats.json`` / ``samples_with_class.json`` can be read instead.
"""
from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from tqdm_core.classes import ClassTable
from tqdm_core.data.base import Sample, SegmentationDataset
from tqdm_core.data.transforms import TrainTransform

CACHE_FORMAT = "tqdm_core.rare_class_sampling.class_pixel_counts/1"
OFFICIAL_FILES = ("sample_class_stats.json", "samples_with_class.json")
# Label/image file suffixes stripped to match official file names ("00001_labelTrainIds.png",
# "aachen_000000_000019_gtFine_labelTrainIds.png") to sample names ("00001", "aachen_000000_000019").
_NAME_SUFFIXES = ("_gtFine_labelTrainIds", "_gtFine_labelIds", "_labelTrainIds", "_train_id", "_leftImg8bit")


def count_class_pixels(dataset: SegmentationDataset, *, num_workers: int = 0, progress: bool = True) -> np.ndarray:
    """Pixels of every class in every label of ``dataset``.

    Args:
        dataset: any dataset with ``load_label(i)`` and ``class_table``.
        num_workers: threads decoding labels in parallel (0 = in the calling thread).
        progress: show a progress bar.

    Returns:
        (N, K) int64 array: ``counts[i, c]`` pixels of class ``c`` in label ``i``; ignored pixels are not counted.
    """
    num_classes = dataset.class_table.num_classes

    def count(index: int) -> np.ndarray:
        return np.bincount(dataset.load_label(index).ravel(), minlength=256)[:num_classes]

    indices = range(len(dataset))
    with ThreadPoolExecutor(max_workers=max(num_workers, 1)) as pool:
        rows = list(tqdm(pool.map(count, indices), total=len(dataset), desc="class statistics", unit="label",
                         disable=not progress))
    return np.stack(rows).astype(np.int64) if rows else np.zeros((0, num_classes), dtype=np.int64)


def _sample_name(file_name: str) -> str:
    stem = Path(file_name).name.rsplit(".", 1)[0]
    for suffix in _NAME_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def read_official_statistics(path: str | Path, dataset: SegmentationDataset) -> np.ndarray:
    """Per-image class pixel counts from the official DAFormer/TLDR preprocessing output.

    Args:
        path: ``sample_class_stats.json`` (a list of ``{"<class>": pixels, ..., "file": label path}``),
            ``samples_with_class.json`` (``{"<class>": [[label path, pixels], ...]}``) or a folder holding either.
            Files are matched to samples by name, so the paths recorded on the authors' machine do not matter.
        dataset: the dataset the statistics describe.

    Returns:
        (N, K) int64 counts in dataset order; samples absent from the file get zeros (they are never drawn).
    """
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in OFFICIAL_FILES if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"neither of {OFFICIAL_FILES} exists in '{path}'")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"class statistics file '{path}' does not exist; expected one of {OFFICIAL_FILES}")
    data = json.loads(path.read_text())
    entries: list[tuple[str, int, int]] = []  # (file, class id, pixels)
    if isinstance(data, list):
        for record in data:
            entries += [(record["file"], int(key), int(value)) for key, value in record.items() if key != "file"]
    elif isinstance(data, dict):
        for key, files in data.items():
            entries += [(file_name, int(key), int(pixels)) for file_name, pixels in files]
    else:
        raise ValueError(f"'{path}' is neither sample_class_stats.json (a list) nor samples_with_class.json (a dict)")

    index_of = {name: index for index, name in enumerate(dataset.names())}
    num_classes = dataset.class_table.num_classes
    counts = np.zeros((len(dataset), num_classes), dtype=np.int64)
    matched = 0
    for file_name, class_id, pixels in entries:
        index = index_of.get(_sample_name(file_name))
        if index is not None and 0 <= class_id < num_classes:
            counts[index, class_id] = pixels
            matched += 1
    if matched == 0:
        example = f" (its first file is '{entries[0][0]}')" if entries else ""
        raise ValueError(f"no entry of '{path}'{example} names a sample of {dataset!r}; the file belongs to another "
                         f"dataset or split")
    return counts


def load_class_statistics(dataset: SegmentationDataset, *, cache_path: str | Path | None = None,
                          official_statistics: str | Path | None = None, num_workers: int = 0,
                          progress: bool = True) -> np.ndarray:
    """Per-image class pixel counts: from the official files, from the cache, or computed and cached.

    Args:
        dataset: the training dataset.
        cache_path: JSON file for computed counts; reused when it describes exactly this dataset (same sample names
            and classes), rewritten otherwise.
        official_statistics: path given to ``read_official_statistics``; takes precedence over the cache.
        num_workers: threads decoding labels when counting.
        progress: show a progress bar when counting.

    Returns:
        (N, K) int64 counts in dataset order.
    """
    if official_statistics is not None:
        return read_official_statistics(official_statistics, dataset)
    names, class_names = dataset.names(), list(dataset.class_table.names)
    if cache_path is not None and Path(cache_path).is_file():
        try:
            cached = json.loads(Path(cache_path).read_text())
            if (cached.get("format") == CACHE_FORMAT and cached.get("names") == names
                    and cached.get("class_names") == class_names):
                return np.asarray(cached["pixel_counts"], dtype=np.int64).reshape(len(names), len(class_names))
            reason = "it describes other samples or classes"
        except (json.JSONDecodeError, KeyError, ValueError) as error:
            reason = f"it cannot be read ({error})"
        warnings.warn(f"class statistics cache '{cache_path}' is recomputed: {reason}", stacklevel=2)
    counts = count_class_pixels(dataset, num_workers=num_workers, progress=progress)
    if cache_path is not None:
        cache_path = Path(cache_path)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": CACHE_FORMAT, "class_names": class_names, "names": names,
                   "pixel_counts": counts.tolist()}
        # Write-then-rename: several data-parallel ranks may compute the cache at the same time.
        temporary = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(payload))
        os.replace(temporary, cache_path)
    return counts


def class_sampling_probabilities(pixel_counts: np.ndarray, class_temp: float) -> tuple[np.ndarray, np.ndarray]:
    """RCS class distribution ``p(c) ∝ exp((1 - f_c) / T)`` over the classes present in the dataset.

    Args:
        pixel_counts: (N, K) per-image class pixel counts.
        class_temp: temperature T > 0.

    Returns:
        (classes, probabilities): (C,) int64 ids of the classes with at least one pixel and (C,) float64
        probabilities summing to 1.
    """
    if class_temp <= 0:
        raise ValueError(f"class_temp must be > 0, got {class_temp}")
    totals = pixel_counts.sum(axis=0)
    classes = np.flatnonzero(totals > 0)
    if classes.size == 0:
        raise ValueError("the labels contain no labelled pixel of any class; rare-class sampling has nothing to draw")
    frequency = totals[classes] / totals[classes].sum()
    logits = (1.0 - frequency) / class_temp
    weights = np.exp(logits - logits.max())  # shifted for numerical stability at small T
    return classes.astype(np.int64), weights / weights.sum()


class RareClassSamplingDataset(Dataset):
    """Training samples drawn by rare-class sampling from ``dataset``.

    Item ``i`` is a deterministic function of (``seed``, epoch, ``i``): any worker, process or restart that asks for
    the same item gets the same sample, which makes data-parallel training and exact resume reproducible. Any
    non-negative index is accepted, so a trainer can index by a global sample counter; ``set_epoch`` varies the
    draws between epochs for a trainer that reuses indices.

    Args:
        dataset: the source dataset; its own ``transform`` is not used (samples come from ``load_sample``).
        transform: augmentation called as ``transform(sample, rng=generator)``; ``None`` returns raw samples.
        class_temp: RCS temperature T.
        min_pixels: an image is a candidate for class ``c`` when it holds more than this many pixels of ``c``.
        min_crop_ratio: the crop must hold more than ``min_pixels * min_crop_ratio`` pixels of ``c``; 0 disables
            crop redraws.
        max_crop_redraws: crop redraws after the first crop.
        pixel_counts: (N, K) per-image class pixel counts; computed or loaded when ``None``.
        cache_path: JSON cache for computed counts (see ``load_class_statistics``).
        official_statistics: official ``sample_class_stats.json`` / ``samples_with_class.json`` (or their folder).
        seed: seed of all draws.
        num_workers: threads decoding labels when counting.
    """

    def __init__(self, dataset: SegmentationDataset, *, transform: TrainTransform | None = None,
                 class_temp: float = 100.0, min_pixels: int = 3000, min_crop_ratio: float = 0.5,
                 max_crop_redraws: int = 10, pixel_counts: np.ndarray | None = None,
                 cache_path: str | Path | None = None, official_statistics: str | Path | None = None,
                 seed: int = 0, num_workers: int = 0) -> None:
        self.dataset = dataset
        self.transform = transform
        self.min_pixels = min_pixels
        self.min_crop_ratio = min_crop_ratio
        self.max_crop_redraws = max_crop_redraws
        self.seed = seed
        self.epoch = 0
        if pixel_counts is None:
            pixel_counts = load_class_statistics(dataset, cache_path=cache_path,
                                                 official_statistics=official_statistics, num_workers=num_workers)
        pixel_counts = np.asarray(pixel_counts, dtype=np.int64)
        expected_shape = (len(dataset), dataset.class_table.num_classes)
        if pixel_counts.shape != expected_shape:
            raise ValueError(f"pixel_counts has shape {pixel_counts.shape}, expected (samples, classes) = "
                             f"{expected_shape}")
        self.pixel_counts = pixel_counts

        classes, probabilities = class_sampling_probabilities(pixel_counts, class_temp)
        candidates = {int(c): np.flatnonzero(pixel_counts[:, c] > min_pixels) for c in classes}
        # The official code asserts here; dropping the class keeps small datasets usable and is reported.
        keep = np.array([candidates[int(c)].size > 0 for c in classes])
        if not keep.any():
            raise ValueError(f"no image has more than min_pixels={min_pixels} pixels of any class; lower min_pixels")
        if not keep.all():
            names = [dataset.class_table.names[c] for c in classes[~keep]]
            warnings.warn(f"rare-class sampling skips {names}: no image has more than {min_pixels} pixels of them",
                          stacklevel=2)
            classes, probabilities = classes[keep], probabilities[keep] / probabilities[keep].sum()
        self.classes = classes
        self.probabilities = probabilities
        self.samples_with_class = {int(c): candidates[int(c)] for c in classes}

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def class_table(self) -> ClassTable:
        return self.dataset.class_table

    def set_epoch(self, epoch: int) -> None:
        """Change the draws of every index (call before each epoch when indices repeat across epochs)."""
        self.epoch = epoch

    def class_probabilities(self) -> dict[str, float]:
        """Sampling probability of each drawable class, by class name."""
        names = self.dataset.class_table.names
        return {names[c]: float(p) for c, p in zip(self.classes, self.probabilities)}

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """Steps 1-2: a class and the index of an image holding more than ``min_pixels`` of it."""
        class_id = int(rng.choice(self.classes, p=self.probabilities))
        return class_id, int(rng.choice(self.samples_with_class[class_id]))

    def generator(self, index: int) -> np.random.Generator:
        """The generator of item ``index`` in the current epoch."""
        if index < 0:
            raise IndexError(f"index must be >= 0, got {index}")
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> Sample:
        rng = self.generator(index)
        class_id, sample_index = self.draw(rng)
        raw = self.dataset.load_sample(sample_index)
        if self.transform is None:
            return raw
        sample = self.transform(raw, rng=rng)
        if self.min_crop_ratio > 0:
            needed = self.min_pixels * self.min_crop_ratio
            for _ in range(self.max_crop_redraws):
                if int((sample["label"] == class_id).sum()) > needed:
                    break
                sample = self.transform(raw, rng=rng)
        return sample

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}: {p:.3f}" for name, p in self.class_probabilities().items())
        return f"RareClassSamplingDataset({self.dataset!r}, class probabilities {{{shown}}})"
