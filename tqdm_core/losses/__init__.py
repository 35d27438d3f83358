"""Training losses of tqdm (METHOD.md section 6): the mask-classification loss and the three regularizers."""
from tqdm_core.losses.mask_classification_loss import MaskClassificationLoss
from tqdm_core.losses.point_sampling import point_sample, sample_uncertain_points
from tqdm_core.losses.regularizers import (
    language_regularization,
    pixel_text_scores,
    vision_language_regularization,
    vision_regularization,
)
from tqdm_core.losses.tqdm_loss import LossConfig, TqdmLoss

__all__ = [
    "LossConfig",
    "MaskClassificationLoss",
    "TqdmLoss",
    "language_regularization",
    "pixel_text_scores",
    "point_sample",
    "sample_uncertain_points",
    "vision_language_regularization",
    "vision_regularization",
]
