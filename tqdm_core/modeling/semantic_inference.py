"""From query predictions to per-pixel class scores and a calibrated confidence (METHOD.md section 8)."""
from __future__ import annotations

import torch


def semantic_scores(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Mask2Former semantic inference S_c(x) = sum_q p_q(c) m_q(x), "no object" dropped.

    Args:
        class_logits: (B, Q, K + 1).
        mask_logits: (B, Q, h, w).

    Returns:
        (B, K, h, w) scores, each in [0, Q].
    """
    class_probs = class_logits.float().softmax(dim=-1)[..., :-1]  # (B, Q, K)
    return torch.einsum("bqk,bqhw->bkhw", class_probs, mask_logits.float().sigmoid())


def scores_to_probabilities(scores: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Normalised mixture P_c = S_c / sum_c' S_c' (METHOD.md section 8, option b), as the confidence basis.

    Unlike the official softmax over S (nearly flat, because S lies in [0, ~1]), this is a proper distribution
    whose maximum tracks how much one class dominates. Where no query fires (all S ~ 0) every P_c is ~0 and the
    pixel's confidence is low, which marks it as unlabeled under a threshold.

    Args:
        scores: (B, K, H, W) non-negative scores.

    Returns:
        (B, K, H, W), sums to 1 wherever sum_c S_c >> eps.
    """
    return scores / scores.sum(dim=1, keepdim=True).clamp_min(eps)


def confidence_and_labels(scores: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest normalised-mixture probability and its class, without forming every P_c.

    max_c S_c / sum S equals max_c (S_c / sum S) exactly (division by one positive number preserves the order),
    so this makes two passes over the scores where `scores_to_probabilities(scores).max(dim=1)` makes three and
    writes a (B, K, H, W) tensor. The class is the first maximum of S.

    Args:
        scores: (B, K, H, W) non-negative scores.

    Returns:
        confidence (B, H, W) in [0, 1] and labels (B, H, W) int64.
    """
    best, labels = scores.max(dim=1)
    return best / scores.sum(dim=1).clamp_min(eps), labels
