"""Camera and illumination changes beyond mmseg's photometric distortion, for models trained on one city.

A small driving dataset comes from a few recordings; a model trained on it meets other light (dusk, overcast, low
sun), other white balance, other sensors. These changes imitate that on a uint8 RGB training image: gamma (exposure
curve), per-channel gain (white balance), Gaussian blur (focus, motion) and Gaussian noise (sensor noise at high
gain). Each is applied with its own probability, in that order; the result is clipped to [0, 255] and rounded.
"""
from __future__ import annotations

import cv2
import numpy as np


class LightingAugmentation:
    """Random gamma, white balance, blur and noise on a uint8 RGB image.

    Args:
        gamma_range: exponent range of ``255 * (x / 255) ** gamma``, drawn log-uniformly (>1 darkens mid-tones).
        gamma_prob: probability of the gamma change.
        channel_gain_range: range of the independent R, G, B gains.
        channel_gain_prob: probability of the white-balance change.
        blur_sigma_range: standard deviation range of the Gaussian blur, in pixels.
        blur_prob: probability of blurring.
        noise_std_range: standard deviation range of the additive Gaussian noise, in grey levels.
        noise_prob: probability of adding noise.
    """

    def __init__(self, *, gamma_range: tuple[float, float] = (0.5, 2.0), gamma_prob: float = 0.5,
                 channel_gain_range: tuple[float, float] = (0.8, 1.2), channel_gain_prob: float = 0.5,
                 blur_sigma_range: tuple[float, float] = (0.3, 1.5), blur_prob: float = 0.2,
                 noise_std_range: tuple[float, float] = (2.0, 10.0), noise_prob: float = 0.3) -> None:
        for name, (low, high) in {"gamma_range": gamma_range, "channel_gain_range": channel_gain_range,
                                  "blur_sigma_range": blur_sigma_range}.items():
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        if not 0 <= noise_std_range[0] <= noise_std_range[1]:
            raise ValueError(f"noise_std_range must be (low, high) with 0 <= low <= high, got {noise_std_range}")
        self.gamma_range = gamma_range
        self.gamma_prob = gamma_prob
        self.channel_gain_range = channel_gain_range
        self.channel_gain_prob = channel_gain_prob
        self.blur_sigma_range = blur_sigma_range
        self.blur_prob = blur_prob
        self.noise_std_range = noise_std_range
        self.noise_prob = noise_prob

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Change (H, W, 3) uint8 RGB; returns a new (H, W, 3) uint8 RGB image."""
        values = image.astype(np.float32)
        if rng.random() < self.gamma_prob:
            gamma = float(np.exp(rng.uniform(np.log(self.gamma_range[0]), np.log(self.gamma_range[1]))))
            values = 255.0 * (values / 255.0) ** gamma
        if rng.random() < self.channel_gain_prob:
            values = values * rng.uniform(*self.channel_gain_range, size=3).astype(np.float32)
        if rng.random() < self.blur_prob:
            sigma = rng.uniform(*self.blur_sigma_range)
            values = cv2.GaussianBlur(values, (0, 0), sigmaX=sigma, sigmaY=sigma)
        if rng.random() < self.noise_prob:
            std = rng.uniform(*self.noise_std_range)
            values = values + rng.normal(0.0, std, size=values.shape).astype(np.float32)
        return np.clip(values + 0.5, 0, 255).astype(np.uint8)
