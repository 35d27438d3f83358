"""Training and evaluation transforms (METHOD.md section 7.2) on small synthetic images."""
import colorsys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tqdm_core.data.transforms import (
    EvalTransform,
    PhotometricDistortion,
    TrainTransform,
    largest_class_fraction,
    pad_to_size,
    random_crop,
    rescale,
    seed_worker,
)
from tqdm_core.image_normalization import CLIP_MEAN, CLIP_STD, normalize_image_array


def make_sample(height: int = 60, width: int = 80, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    label = (np.arange(width)[None, :] // 10 % 4).repeat(height, axis=0).astype(np.uint8)  # 10-px class stripes
    return {"image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "label": label, "name": "x"}


def geometry_only(**overrides) -> TrainTransform:
    """A transform with every random step off unless overridden."""
    kwargs = {"crop_size": (60, 80), "scale_range": (1.0, 1.0), "cat_max_ratio": 1.0, "flip_prob": 0.0,
              "photometric": False, "seed": 0}
    return TrainTransform(**(kwargs | overrides))


def test_train_transform_output_contract():
    out = TrainTransform(crop_size=(32, 48), seed=0)(make_sample())
    assert set(out) == {"image", "label", "name"} and out["name"] == "x"
    assert out["image"].shape == (3, 32, 48) and out["image"].dtype == torch.float32
    assert out["label"].shape == (32, 48) and out["label"].dtype == torch.int64
    assert set(out["label"].unique().tolist()) <= {0, 1, 2, 3, 255}


def test_identity_settings_only_normalise():
    sample = make_sample()
    out = geometry_only()(sample)
    np.testing.assert_allclose(out["image"].numpy(), normalize_image_array(sample["image"]), atol=1e-6)
    np.testing.assert_array_equal(out["label"].numpy(), sample["label"])


def test_flip_moves_image_and_label_together():
    sample = make_sample()
    out = geometry_only(flip_prob=1.0)(sample)
    np.testing.assert_allclose(out["image"].numpy(), normalize_image_array(sample["image"][:, ::-1]), atol=1e-6)
    np.testing.assert_array_equal(out["label"].numpy(), sample["label"][:, ::-1])


def test_padding_fills_label_with_255_and_image_with_black_or_clip_mean():
    """A 60x80 sample padded to 100x90: rows >= 60 and columns >= 80 are padding.

    Raw black normalises to -mean/std per channel; with the official order (normalise, then pad) the padding is 0.
    """
    sample = make_sample()
    out = geometry_only(crop_size=(100, 90))(sample)
    assert out["image"].shape == (3, 100, 90)
    label = out["label"].numpy()
    assert np.all(label[60:] == 255) and np.all(label[:, 80:] == 255)
    np.testing.assert_array_equal(label[:60, :80], sample["label"])
    black = -np.asarray(CLIP_MEAN, np.float32) / np.asarray(CLIP_STD, np.float32)
    np.testing.assert_allclose(out["image"][:, 70, 85].numpy(), black, rtol=1e-5)
    np.testing.assert_allclose(out["image"][:, :60, :80].numpy(), normalize_image_array(sample["image"]), atol=1e-6)

    official = geometry_only(crop_size=(100, 90), pad_after_normalize=True)(sample)
    np.testing.assert_allclose(official["image"][:, 60:].numpy(), 0.0, atol=1e-5)


def test_rescale_keeps_ratio_and_never_blends_ids():
    sample = make_sample()
    image, label = rescale(sample["image"], sample["label"], 1.5)
    assert image.shape == (90, 120, 3) and label.shape == (90, 120)
    assert set(np.unique(label)) <= set(np.unique(sample["label"]))
    image, label = rescale(sample["image"], sample["label"], 0.51)
    assert label.shape == (31, 41)  # 60 * 0.51 = 30.6 and 80 * 0.51 = 40.8, rounded


def test_largest_class_fraction_ignores_255():
    """Label: 6 pixels of class 1, 2 of class 4, 8 ignored -> 2 classes, largest share 6 / 8 = 0.75."""
    label = np.array([[1, 1, 1, 1], [1, 1, 4, 4], [255] * 4, [255] * 4], np.uint8)
    assert largest_class_fraction(label) == (2, 0.75)
    assert largest_class_fraction(np.full((3, 3), 255, np.uint8)) == (0, 0.0)


def test_cat_max_ratio_crop_retries_until_no_class_dominates():
    """Vertical stripes of 24 px alternate between classes 0 and 1; crops are 32 px wide.

    A window fails only when it holds a whole stripe (share 24/32 = 0.75, not < 0.75): 9 of every 24 left offsets.
    One draw fails 37.5% of the time; with 10 redraws the failure rate is 0.375^11 ~ 2e-5.
    """
    label = ((np.arange(240) // 24) % 2).astype(np.uint8)[None, :].repeat(40, axis=0)
    image = np.zeros((40, 240, 3), np.uint8)
    rng = np.random.default_rng(0)

    def shares(retries: int) -> list[float]:
        return [largest_class_fraction(random_crop(image, label, (32, 32), rng=rng, cat_max_ratio=0.75,
                                                   cat_max_retries=retries)[1])[1] for _ in range(300)]

    assert max(shares(10)) < 0.75
    assert np.mean(np.asarray(shares(0)) >= 0.75) > 0.2  # without retries many crops are dominated


def test_crop_of_an_image_smaller_than_the_crop_keeps_it_whole():
    sample = make_sample(20, 30)
    image, label = random_crop(sample["image"], sample["label"], (64, 64), rng=np.random.default_rng(0))
    assert image.shape == (20, 30, 3)
    np.testing.assert_array_equal(label, sample["label"])
    np.testing.assert_array_equal(pad_to_size(label, (64, 64), 255)[20:], 255)


def test_fixed_seed_is_deterministic_and_seeds_differ():
    sample = make_sample(120, 160)
    first = TrainTransform(crop_size=(48, 48), seed=7)(sample)
    second = TrainTransform(crop_size=(48, 48), seed=7)(sample)
    other = TrainTransform(crop_size=(48, 48), seed=8)(sample)
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["label"], second["label"])
    assert not torch.equal(first["image"], other["image"])
    passed = TrainTransform(crop_size=(48, 48), seed=123)(sample, rng=np.random.default_rng(7))
    assert torch.equal(passed["image"], first["image"])  # a passed generator replaces the transform's own


def test_brightness_shift_stays_within_32():
    distortion = PhotometricDistortion(contrast_range=(1.0, 1.0), saturation_range=(1.0, 1.0), hue_delta=0, prob=1.0)
    rng = np.random.default_rng(0)
    shifts = []
    for _ in range(50):
        out = distortion(np.full((4, 4, 3), 100, np.uint8), rng).astype(int)
        assert np.all(out == out[0, 0, 0])  # one offset for the whole image
        shifts.append(out[0, 0, 0] - 100)
    assert -32 <= min(shifts) < -16 and 16 < max(shifts) <= 32


def test_hue_shift_stays_within_18_opencv_units():
    """Only the hue changes: a saturated orange keeps its saturation and value, its hue moves by <= 18 of 180."""
    distortion = PhotometricDistortion(brightness_delta=0, contrast_range=(1.0, 1.0), saturation_range=(1.0, 1.0),
                                       hue_delta=18, prob=1.0)
    rng = np.random.default_rng(0)
    rgb = np.array([255, 128, 0], np.uint8)
    hue_in = colorsys.rgb_to_hsv(*(rgb / 255))[0] * 180
    moved = []
    for _ in range(40):
        out = distortion(np.tile(rgb, (2, 2, 1)), rng)[0, 0] / 255
        delta = (colorsys.rgb_to_hsv(*out)[0] * 180 - hue_in + 90) % 180 - 90
        moved.append(delta)
    assert max(abs(d) for d in moved) <= 18 + 1.5  # +1.5: uint8 HSV round trip
    assert max(abs(d) for d in moved) > 9


def test_photometric_with_zero_probability_is_identity():
    image = make_sample()["image"]
    np.testing.assert_array_equal(PhotometricDistortion(prob=0.0)(image, np.random.default_rng(0)), image)


def test_eval_transform_keeps_label_resolution():
    """360x480 bounded by (2048, 1024): ratio min(2048/480, 1024/360) = 2.844 -> 1024x1365 image."""
    sample = make_sample(360, 480)
    out = EvalTransform(scale=(2048, 1024))(sample)
    assert out["image"].shape == (3, 1024, 1365) and out["label"].shape == (360, 480)
    np.testing.assert_array_equal(out["label"].numpy(), sample["label"])
    assert EvalTransform(scale=(1024, 2048), resize_label=True)(sample)["label"].shape == (1024, 1365)
    plain = EvalTransform()(sample)
    np.testing.assert_allclose(plain["image"].numpy(), normalize_image_array(sample["image"]), atol=1e-6)
    with pytest.raises(ValueError, match="scale"):
        EvalTransform(scale=(0, 10))


class _RepeatedSample(Dataset):
    def __init__(self, transform: TrainTransform) -> None:
        self.sample = make_sample(120, 160)
        self.transform = transform

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        return self.transform(self.sample)


def _crops(seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    loader = DataLoader(_RepeatedSample(TrainTransform(crop_size=(32, 32), seed=0)), batch_size=1, num_workers=2,
                        worker_init_fn=seed_worker)
    return [batch["label"][0] for batch in loader]


def test_seed_worker_gives_workers_distinct_reproducible_generators():
    crops = _crops(seed=1)
    # Items 0 and 1 are the first draw of worker 0 and worker 1: the same generator would give the same crop.
    assert not torch.equal(crops[0], crops[1])
    assert all(torch.equal(a, b) for a, b in zip(crops, _crops(seed=1)))
