"""Training augmentation (METHOD.md section 7.2) and the evaluation transform.

Both take a dataset sample ``{"image": (H, W, 3) uint8 RGB, "label": (H, W) uint8 train ids, "name": str}`` and
return ``{"image": (3, h, w) float32 tensor, CLIP-normalised, "label": (h, w) int64 tensor, 255 = ignore,
"name": str}``.

All randomness comes from a ``numpy.random.Generator``: the one passed to ``TrainTransform.__call__`` (rare-class
sampling derives one per sample, see ``rare_class_sampling``), else the transform's own generator, which
``seed_worker`` reseeds in each DataLoader worker so workers do not repeat each other's augmentations.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from tqdm_core.classes import IGNORE_INDEX
from tqdm_core.data.base import Sample
from tqdm_core.data.lighting_augmentation import LightingAugmentation
from tqdm_core.image_normalization import CLIP_MEAN, normalize_image_array


def scaled_size(height: int, width: int, ratio: float) -> tuple[int, int]:
    """(width, height) for cv2.resize of an (height, width) image scaled by ``ratio``, rounded, at least 1."""
    return max(1, int(width * ratio + 0.5)), max(1, int(height * ratio + 0.5))


def rescale(image: np.ndarray, label: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize image and label by ``ratio``, keeping the aspect ratio.

    Args:
        image: (H, W, 3) uint8.
        label: (H, W) uint8.
        ratio: scale factor > 0.

    Returns:
        (round(H * ratio), round(W * ratio), 3) image (bilinear) and label (nearest: ids must not be blended).
    """
    size = scaled_size(*label.shape, ratio)
    return (cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST))


def largest_class_fraction(label: np.ndarray, ignore_index: int = IGNORE_INDEX) -> tuple[int, float]:
    """Number of classes in ``label`` and the share of the most frequent one among labelled pixels.

    Args:
        label: (H, W) uint8 train ids.
        ignore_index: id excluded from the count.

    Returns:
        (number of classes present, largest class pixels / labelled pixels); (0, 0.0) for a label with no class.
    """
    counts = np.bincount(label.ravel(), minlength=256)
    counts[ignore_index] = 0
    present = counts[counts > 0]
    if present.size == 0:
        return 0, 0.0
    return int(present.size), float(present.max() / present.sum())


def random_crop(image: np.ndarray, label: np.ndarray, crop_size: tuple[int, int], *, rng: np.random.Generator,
                cat_max_ratio: float = 0.75, cat_max_retries: int = 10,
                ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Random crop that avoids windows dominated by one class (mmseg ``RandomCrop`` with ``cat_max_ratio``).

    A window is accepted when it holds at least two classes and the largest covers less than ``cat_max_ratio`` of
    its labelled pixels; otherwise a new window is drawn, up to ``cat_max_retries`` times, and the last one is kept.
    An image smaller than the crop is returned whole along that axis (``pad_to_size`` fills it up afterwards).

    Args:
        image: (H, W, 3).
        label: (H, W) train ids.
        crop_size: (crop height, crop width).
        rng: source of the window offsets.
        cat_max_ratio: largest allowed class share; 1.0 or more disables the check.
        cat_max_retries: redraws after the first window.
        ignore_index: id not counted as a class.

    Returns:
        (min(H, crop_h), min(W, crop_w), 3) image and (min(H, crop_h), min(W, crop_w)) label.
    """
    crop_height, crop_width = crop_size
    height, width = label.shape
    for _ in range(cat_max_retries + 1):
        top = int(rng.integers(0, max(height - crop_height, 0) + 1))
        left = int(rng.integers(0, max(width - crop_width, 0) + 1))
        window = label[top:top + crop_height, left:left + crop_width]
        if cat_max_ratio >= 1.0:
            break
        num_classes, largest = largest_class_fraction(window, ignore_index)
        if num_classes > 1 and largest < cat_max_ratio:
            break
    return image[top:top + crop_height, left:left + crop_width], window


def pad_to_size(array: np.ndarray, size: tuple[int, int], value: float | tuple[float, ...]) -> np.ndarray:
    """Pad the bottom and right of an (H, W) or (H, W, C) array up to at least ``size`` = (height, width).

    Args:
        array: (H, W) or (H, W, C).
        size: minimum (height, width).
        value: fill value, one per channel for (H, W, C).

    Returns:
        (max(H, height), max(W, width)[, C]) array of the same dtype.
    """
    pad_bottom = max(size[0] - array.shape[0], 0)
    pad_right = max(size[1] - array.shape[1], 0)
    if pad_bottom == 0 and pad_right == 0:
        return array
    padded = np.empty((array.shape[0] + pad_bottom, array.shape[1] + pad_right, *array.shape[2:]), array.dtype)
    padded[...] = value
    padded[: array.shape[0], : array.shape[1]] = array
    return padded


class PhotometricDistortion:
    """mmseg's ``PhotoMetricDistortion`` on a uint8 RGB image (METHOD.md section 7.2, step 5).

    Brightness, contrast, saturation and hue are each changed with probability ``prob``, in this order except that
    contrast comes before or after the HSV changes, at random. Like the original, every step clips to [0, 255] and
    truncates to uint8.

    Args:
        brightness_delta: added value drawn from [-delta, delta].
        contrast_range: multiplier range.
        saturation_range: multiplier range for the HSV saturation channel.
        hue_delta: hue shift drawn from the integers in [-delta, delta] on OpenCV's 0..180 hue scale.
        prob: probability of applying each of the four changes.
    """

    def __init__(self, *, brightness_delta: float = 32.0, contrast_range: tuple[float, float] = (0.5, 1.5),
                 saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18, prob: float = 0.5) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta
        self.prob = prob

    @staticmethod
    def _affine(values: np.ndarray, alpha: float, beta: float = 0.0) -> np.ndarray:
        return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Distort (H, W, 3) uint8 RGB; returns a new (H, W, 3) uint8 RGB image."""
        if rng.random() < self.prob:
            image = self._affine(image, 1.0, rng.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = rng.random() < 0.5
        if contrast_first and rng.random() < self.prob:
            image = self._affine(image, rng.uniform(*self.contrast_range))
        change_saturation = rng.random() < self.prob
        change_hue = rng.random() < self.prob
        if change_saturation or change_hue:
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # uint8: hue in [0, 180), saturation in [0, 255]
            if change_saturation:
                hsv[..., 1] = self._affine(hsv[..., 1], rng.uniform(*self.saturation_range))
            if change_hue:
                shift = int(rng.integers(-self.hue_delta, self.hue_delta + 1))
                hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if not contrast_first and rng.random() < self.prob:
            image = self._affine(image, rng.uniform(*self.contrast_range))
        return image


def to_tensors(image: np.ndarray, label: np.ndarray, name: str) -> Sample:
    """(H, W, 3) RGB in [0, 255] and (H, W) ids -> {(3, H, W) float32 CLIP-normalised, (H, W) int64, name}."""
    return {
        "image": torch.from_numpy(normalize_image_array(image)),
        "label": torch.from_numpy(label.astype(np.int64)),
        "name": name,
    }


class TrainTransform:
    """The training pipeline of METHOD.md section 7.2: rescale, cat-max-ratio crop, flip, photometric, normalise, pad.

    Args:
        crop_size: (height, width) of the training crop.
        scale_range: the image is rescaled by a factor drawn uniformly from this range of its original size.
        cat_max_ratio: largest share one class may take of a crop (see ``random_crop``); 1.0 disables it.
        cat_max_retries: crop redraws when a window fails the ``cat_max_ratio`` test.
        flip_prob: probability of a horizontal flip.
        photometric: apply ``PhotometricDistortion``.
        lighting: further camera and illumination changes applied after it (``LightingAugmentation``); None: off.
        pad_after_normalize: official quirk: mmseg normalises before padding, so the padded border is 0 after
            normalisation, i.e. the CLIP mean colour. False pads the raw image with black (0) instead.
        ignore_index: label value of padded and unlabelled pixels.
        seed: seed of the transform's own generator, used when no generator is passed to ``__call__``.
    """

    def __init__(self, *, crop_size: tuple[int, int] = (512, 512), scale_range: tuple[float, float] = (0.5, 2.0),
                 cat_max_ratio: float = 0.75, cat_max_retries: int = 10, flip_prob: float = 0.5,
                 photometric: bool = True, lighting: LightingAugmentation | None = None,
                 pad_after_normalize: bool = False, ignore_index: int = IGNORE_INDEX, seed: int | None = None) -> None:
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ValueError(f"crop_size must be (height, width) with positive values, got {crop_size}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.cat_max_ratio = cat_max_ratio
        self.cat_max_retries = cat_max_retries
        self.flip_prob = flip_prob
        self.photometric = PhotometricDistortion() if photometric else None
        self.lighting = lighting
        self.pad_after_normalize = pad_after_normalize
        self.ignore_index = ignore_index
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Restart the transform's own generator (used by ``seed_worker`` in DataLoader workers)."""
        self.rng = np.random.default_rng(seed)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        """Augment one sample.

        Args:
            sample: {"image": (H, W, 3) uint8 RGB, "label": (H, W) uint8 train ids, "name": str}.
            rng: generator for this call; defaults to the transform's own.

        Returns:
            {"image": (3, crop_h, crop_w) float32 CLIP-normalised, "label": (crop_h, crop_w) int64, "name": str}.
        """
        rng = self.rng if rng is None else rng
        image, label = sample["image"], sample["label"]
        image, label = rescale(image, label, rng.uniform(*self.scale_range))
        image, label = random_crop(image, label, self.crop_size, rng=rng, cat_max_ratio=self.cat_max_ratio,
                                   cat_max_retries=self.cat_max_retries, ignore_index=self.ignore_index)
        if rng.random() < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.photometric is not None:
            image = self.photometric(np.ascontiguousarray(image), rng)
        if self.lighting is not None:
            image = self.lighting(np.ascontiguousarray(image), rng)
        # 0 after normalisation is the CLIP mean colour in the raw domain.
        image_fill = CLIP_MEAN if self.pad_after_normalize else 0.0
        image = pad_to_size(image.astype(np.float32), self.crop_size, image_fill)
        label = pad_to_size(label, self.crop_size, self.ignore_index)
        return to_tensors(image, label, sample["name"])


class EvalTransform:
    """Evaluation preprocessing: optional keep-ratio resize of the image, normalisation.

    The label keeps its original resolution by default, as in the official evaluation: predictions are resized
    back to the label, and the mIoU is computed at full resolution.

    Args:
        scale: ``(long side, short side)`` bound for a keep-ratio resize (the official test scales are
            (2048, 1024) for Cityscapes and Mapillary, (1280, 720) for BDD100K); ``None`` keeps the image size.
        resize_label: also resize the label (nearest), so image and label have the same size.
    """

    def __init__(self, *, scale: tuple[int, int] | None = None, resize_label: bool = False) -> None:
        if scale is not None and (len(scale) != 2 or min(scale) <= 0):
            raise ValueError(f"scale must be (long side, short side) with positive values or None, got {scale}")
        self.scale = None if scale is None else (max(scale), min(scale))
        self.resize_label = resize_label

    def __call__(self, sample: Sample) -> Sample:
        """{"image": (H, W, 3) uint8, "label": (H, W) uint8, "name"} -> {(3, h, w) float32, (H, W) int64, name}."""
        image, label = sample["image"], sample["label"]
        if self.scale is not None:
            height, width = label.shape
            ratio = min(self.scale[0] / max(height, width), self.scale[1] / min(height, width))
            size = scaled_size(height, width, ratio)
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            if self.resize_label:
                label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        return to_tensors(image, label, sample["name"])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker's copy of the dataset transform its own generator.

    Without it every worker inherits the same generator state and produces the same augmentations. The seed is
    the one torch assigns to the worker (base seed + worker id), so runs stay reproducible under
    ``torch.manual_seed``.
    """
    info = torch.utils.data.get_worker_info()
    if info is None:
        raise RuntimeError("seed_worker is a DataLoader worker_init_fn; it must run inside a DataLoader worker")
    transform = getattr(info.dataset, "transform", None)
    if hasattr(transform, "reseed"):
        transform.reseed(info.seed)
