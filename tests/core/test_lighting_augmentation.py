"""LightingAugmentation: each change does what its docstring says, on hand-computed pixels."""
from __future__ import annotations

import numpy as np
import pytest

from tqdm_core.data import LightingAugmentation, TrainTransform

OFF = dict(gamma_prob=0.0, channel_gain_prob=0.0, blur_prob=0.0, noise_prob=0.0)


def test_all_changes_off_returns_the_image():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = LightingAugmentation(**OFF)(image, np.random.default_rng(1))
    np.testing.assert_array_equal(out, image)
    assert out is not image and out.dtype == np.uint8


def test_gamma_is_the_exposure_curve():
    """gamma_range (2, 2): 255 * (x / 255) ** 2, so 0 -> 0, 255 -> 255 and 128 -> 64.25 -> 64 after rounding."""
    image = np.array([[[0, 128, 255]]], dtype=np.uint8)
    out = LightingAugmentation(**{**OFF, "gamma_prob": 1.0}, gamma_range=(2.0, 2.0))(image, np.random.default_rng(0))
    np.testing.assert_array_equal(out, [[[0, 64, 255]]])


def test_channel_gain_scales_each_channel_independently_and_clips():
    image = np.full((2, 2, 3), 200, dtype=np.uint8)
    out = LightingAugmentation(**{**OFF, "channel_gain_prob": 1.0}, channel_gain_range=(0.8, 1.2))(
        image, np.random.default_rng(3))
    gains = np.random.default_rng(3)
    gains.random()  # the gamma draw
    gains.random()  # the gain draw
    expected = np.clip(200 * gains.uniform(0.8, 1.2, size=3).astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out[0, 0], expected)
    assert len(set(out[0, 0].tolist())) == 3  # three different gains


def test_blur_keeps_flat_regions_and_softens_edges():
    image = np.zeros((9, 9, 3), dtype=np.uint8)
    image[:, 5:] = 255
    out = LightingAugmentation(**{**OFF, "blur_prob": 1.0}, blur_sigma_range=(1.0, 1.0))(image, np.random.default_rng(0))
    assert out[0, 0, 0] == 0 and out[0, 8, 0] == 255  # far from the edge: unchanged
    assert 0 < out[0, 4, 0] < 128 < out[0, 5, 0] < 255  # the step became a ramp


def test_noise_has_the_drawn_spread():
    image = np.full((200, 200, 3), 128, dtype=np.uint8)
    out = LightingAugmentation(**{**OFF, "noise_prob": 1.0}, noise_std_range=(8.0, 8.0))(image, np.random.default_rng(0))
    residual = out.astype(np.float64) - 128
    assert abs(residual.mean()) < 0.2 and 7.7 < residual.std() < 8.3


def test_invalid_ranges_are_refused():
    with pytest.raises(ValueError, match="gamma_range"):
        LightingAugmentation(gamma_range=(0.0, 2.0))
    with pytest.raises(ValueError, match="noise_std_range"):
        LightingAugmentation(noise_std_range=(3.0, 1.0))


def test_train_transform_applies_lighting_after_photometric():
    sample = {"image": np.full((16, 16, 3), 128, dtype=np.uint8), "label": np.zeros((16, 16), dtype=np.uint8),
              "name": "x"}
    darken = LightingAugmentation(**{**OFF, "gamma_prob": 1.0}, gamma_range=(2.0, 2.0))
    plain = TrainTransform(crop_size=(16, 16), scale_range=(1.0, 1.0), flip_prob=0.0, photometric=False)
    lit = TrainTransform(crop_size=(16, 16), scale_range=(1.0, 1.0), flip_prob=0.0, photometric=False,
                         lighting=darken)
    assert (lit(sample, np.random.default_rng(0))["image"] < plain(sample, np.random.default_rng(0))["image"]).all()
