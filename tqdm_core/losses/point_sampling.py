"""Uncertainty-based importance point sampling for the mask losses (METHOD.md section 6.1).

The mask losses are computed on a set of points per mask rather than on every pixel (PointRend, Mask2Former):
most points go where the prediction is least certain (mask logit near 0), the rest are drawn uniformly so that
confidently predicted regions still receive supervision.

Points are in normalised image coordinates, (x, y) in [0, 1] x [0, 1], so the same set of points addresses a
1/4-resolution mask prediction and the full-resolution ground truth alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample feature maps at normalised points.

    Pixel (i, j) of an (H, W) map covers [j/W, (j+1)/W] x [i/H, (i+1)/H] (``align_corners=False``), so the centre
    of pixel (i, j) is the point ((j + 0.5)/W, (i + 0.5)/H). Points within half a pixel of the border blend in
    zeros (``grid_sample``'s zero padding), as Mask2Former does.

    Args:
        features: (N, C, H, W) maps to sample.
        points: (N, P, 2) point coordinates (x, y) in [0, 1].

    Returns:
        (N, C, P) sampled values, in the dtype of ``features``.
    """
    if features.dim() != 4 or points.dim() != 3 or points.shape[-1] != 2 or points.shape[0] != features.shape[0]:
        raise ValueError(
            f"point_sample expects features (N, C, H, W) and points (N, P, 2) with the same N; "
            f"got features {tuple(features.shape)} and points {tuple(points.shape)}"
        )
    # grid_sample addresses [-1, 1] and wants a 2-D grid of points: (N, P, 2) -> (N, P, 1, 2).
    grid = (2.0 * points - 1.0).unsqueeze(2).to(features.dtype)
    sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return sampled.squeeze(3)  # (N, C, P, 1) -> (N, C, P)


def logit_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of sigmoid mask logits: -|logit|, highest (0) on the decision boundary. Same shape as input."""
    return -logits.abs()


@torch.no_grad()
def sample_uncertain_points(
    mask_logits: torch.Tensor,
    *,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the points at which each mask is supervised.

    Draws ``int(num_points * oversample_ratio)`` uniform candidates per mask, keeps the
    ``int(num_points * importance_sample_ratio)`` most uncertain of them (mask logit closest to 0, bilinearly
    interpolated at the candidate) and fills up to ``num_points`` with fresh uniform points. With the paper's
    12544 / 3.0 / 0.75 that is 37632 candidates, 9408 uncertain and 3136 uniform points per mask.

    Runs under ``no_grad``: the coordinates are a sampling decision, not a function to differentiate.

    Args:
        mask_logits: (N, 1, H, W) mask logits, one map per mask.
        num_points: points per mask, > 0.
        oversample_ratio: candidates per point, >= 1.
        importance_sample_ratio: fraction of the points chosen by uncertainty, in [0, 1].
        generator: optional random generator on ``mask_logits.device`` (reproducible tests).

    Returns:
        (N, num_points, 2) point coordinates (x, y) in [0, 1], float32, without gradient.
    """
    if mask_logits.dim() != 4 or mask_logits.shape[1] != 1:
        raise ValueError(f"mask_logits must be (N, 1, H, W), got {tuple(mask_logits.shape)}")
    if num_points <= 0:
        raise ValueError(f"num_points must be > 0, got {num_points}")
    if oversample_ratio < 1.0:
        raise ValueError(f"oversample_ratio must be >= 1 (candidates per point), got {oversample_ratio}")
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")

    num_masks = mask_logits.shape[0]
    device = mask_logits.device
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(num_points * importance_sample_ratio)
    num_random = num_points - num_uncertain

    candidates = torch.rand(num_masks, num_candidates, 2, device=device, generator=generator)
    uncertainty = logit_uncertainty(point_sample(mask_logits.float(), candidates)[:, 0])  # (N, num_candidates)
    top_index = uncertainty.topk(num_uncertain, dim=1).indices  # (N, num_uncertain)
    # (N, num_uncertain) -> (N, num_uncertain, 2): the same candidate index for x and y.
    uncertain_points = candidates.gather(1, top_index.unsqueeze(-1).expand(-1, -1, 2))
    random_points = torch.rand(num_masks, num_random, 2, device=device, generator=generator)
    return torch.cat([uncertain_points, random_points], dim=1)
