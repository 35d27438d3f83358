"""Rare-class paste: objects of rare classes cut from another training crop and pasted at the same place.

A lever against context shortcuts (issue 13): a small model trained on one city learns that signs and fences sit on
buildings, and on unseen streets it labels them building. Pasting the pixels of chosen classes from a second,
independently augmented crop (ClassMix, Olsson et al. WACV 2021, restricted to a class list and used on labelled
data) shows those objects in front of other backgrounds and under other light, at the height in the frame where
they occur. The pasted pixels take the donor's labels, so the targets stay exact.

Item ``k`` is a pure function of ``k`` (as every training sample: ``training/sample_stream.py``), so runs resume
exactly with it on.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from tqdm_core.data.base import Sample, SegmentationDataset
from tqdm_core.data.transforms import TrainTransform

_STREAM = 0xC1A55  # separates this wrapper's draws from those of the stream it wraps


class RareClassPaste(Dataset):
    """Training samples of ``stream``; with probability ``probability`` a donor crop's pixels of ``class_ids`` are
    pasted over them.

    Args:
        stream: training samples by number (``RareClassSamplingDataset`` or ``ShuffledStream``).
        dataset: the source dataset of the donors (the stream's).
        transform: the augmentation applied to a donor, as to any training sample.
        pixel_counts: (N, K) per-image class pixel counts of ``dataset`` (``load_class_statistics``).
        class_ids: the classes whose pixels are pasted.
        probability: share of samples that get a paste.
        min_pixels: a donor image holds more than this many pixels of the drawn class, and its crop more than half
            of that (up to ``max_crop_redraws`` redraws; a crop still without them pastes nothing).
        seed: seed of the draws.
        max_crop_redraws: donor crop redraws.
    """

    def __init__(self, stream: Dataset, *, dataset: SegmentationDataset, transform: TrainTransform,
                 pixel_counts: np.ndarray, class_ids: list[int], probability: float, min_pixels: int = 500,
                 seed: int = 0, max_crop_redraws: int = 5) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if not class_ids:
            raise ValueError("class_ids is empty: name at least one class to paste")
        self.stream = stream
        self.dataset = dataset
        self.transform = transform
        self.probability = probability
        self.min_pixels = min_pixels
        self.seed = seed
        self.max_crop_redraws = max_crop_redraws
        self.class_ids = torch.tensor(sorted(set(class_ids)), dtype=torch.int64)
        self.donors = {c: np.flatnonzero(pixel_counts[:, c] > min_pixels) for c in self.class_ids.tolist()}
        self.donors = {c: images for c, images in self.donors.items() if images.size > 0}
        if not self.donors:
            names = [dataset.class_table.names[c] for c in self.class_ids.tolist()]
            raise ValueError(f"no image holds more than min_pixels={min_pixels} pixels of {names}; lower min_pixels "
                             f"or name other classes")

    def __len__(self) -> int:
        return len(self.stream)

    @property
    def class_table(self):
        return self.stream.class_table

    def __getitem__(self, number: int) -> Sample:
        sample = self.stream[number]
        rng = np.random.default_rng([self.seed, _STREAM, number])
        if rng.random() >= self.probability:
            return sample
        donor = self.donor_crop(rng)
        if donor["label"].shape != sample["label"].shape:
            raise ValueError(f"the donor crop is {tuple(donor['label'].shape)} but the sample is "
                             f"{tuple(sample['label'].shape)}: give RareClassPaste the stream's own transform")
        pasted = torch.isin(donor["label"], self.class_ids)
        image, label = sample["image"].clone(), sample["label"].clone()
        image[:, pasted] = donor["image"][:, pasted]
        label[pasted] = donor["label"][pasted]
        return {**sample, "image": image, "label": label}

    def donor_crop(self, rng: np.random.Generator) -> Sample:
        """An augmented crop of an image rich in one of the paste classes (drawn uniformly among them)."""
        classes = sorted(self.donors)
        class_id = classes[int(rng.integers(len(classes)))]
        raw = self.dataset.load_sample(int(rng.choice(self.donors[class_id])))
        crop = self.transform(raw, rng=rng)
        for _ in range(self.max_crop_redraws):
            if int((crop["label"] == class_id).sum()) > self.min_pixels // 2:
                break
            crop = self.transform(raw, rng=rng)
        return crop
