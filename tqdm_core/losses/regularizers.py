"""The three regularizers of tqdm (METHOD.md section 6.2).

- Language regularization L_reg^L keeps the learned prompts' text embeddings near the hand-crafted anchors
  ("a clean origami of a {class}"): each refined text embedding must classify as its own class among the anchors.
- Vision-language regularization L_reg^VL aligns pixels and text: the cosine map between the dense image
  embeddings and the text embeddings, read as per-pixel class logits, must segment the image.
- Vision regularization L_reg^V keeps the image-level embedding near that of the frozen pretrained encoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tqdm_core.classes import IGNORE_INDEX


def language_regularization(text_embeddings: torch.Tensor, anchor_embeddings: torch.Tensor) -> torch.Tensor:
    """L_reg^L: cross-entropy of each text embedding against the anchors, target its own class.

    ``mean_{b,k} CE(softmax_j <t_hat_bk, a_hat_j>, k)``. The logits are raw cosines in [-1, 1] with no temperature,
    as in the official code (METHOD.md section 11, item 5). The loss therefore cannot drop below
    log(1 + (K - 1) e^-2) (about 1.23 for K = 19): it keeps pulling each embedding toward its own anchor and away
    from the others rather than saturating.

    Args:
        text_embeddings: (B, K, D) refined text embeddings t, any norm.
        anchor_embeddings: (K, D) anchor embeddings a, any norm (normalised here).

    Returns:
        () loss.
    """
    if (
        text_embeddings.dim() != 3
        or anchor_embeddings.dim() != 2
        or text_embeddings.shape[1:] != anchor_embeddings.shape
    ):
        raise ValueError(
            f"language regularization expects text embeddings (B, K, D) and anchors (K, D) with the same K and D, "
            f"got {tuple(text_embeddings.shape)} and {tuple(anchor_embeddings.shape)}; the anchors must be computed "
            f"for the model's class list"
        )
    batch_size, num_classes, _ = text_embeddings.shape
    text = F.normalize(text_embeddings.float(), dim=-1)
    anchors = F.normalize(anchor_embeddings.float(), dim=-1)
    with _full_precision(text.device):
        cosines = torch.einsum("bkd,jd->bkj", text, anchors)  # (B, K, D) x (K, D) -> (B, K, K)
    targets = torch.arange(num_classes, device=cosines.device).expand(batch_size, num_classes)
    # (B, K, K) -> (B*K, K): one K-way classification per text embedding.
    return F.cross_entropy(cosines.flatten(0, 1), targets.flatten())


def pixel_text_scores(dense_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """The score map ``S_bkhw = <v_hat_bhw, t_hat_bk>``: cosine of every pixel's dense embedding with every class's
    text embedding (METHOD.md section 6.2), in float32 whatever the caller's autocast.

    Args:
        dense_embeddings: (B, D, h, w) dense image embeddings V in the CLIP space, any norm.
        text_embeddings: (B, K, D) refined text embeddings t, any norm.

    Returns:
        (B, K, h, w) cosines in [-1, 1].
    """
    pixels = F.normalize(dense_embeddings.float(), dim=1)
    text = F.normalize(text_embeddings.float(), dim=-1)
    with _full_precision(pixels.device):
        return torch.einsum("bdhw,bkd->bkhw", pixels, text)  # (B, D, h, w) x (B, K, D) -> (B, K, h, w)


def vision_language_regularization(
    dense_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 0.07,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """L_reg^VL: pixel-wise cross-entropy of the pixel-text cosine map against the labels.

    Logits are ``<v_hat_bhw, t_hat_bk> / temperature``, bilinearly upsampled (align_corners=False) to the label
    size. The mean runs over **all** pixels, ignored ones included (they add 0 to the sum): the official code uses
    mmseg's cross-entropy with ``avg_non_ignore=False`` (METHOD.md section 11, item 6), so crops with much ignore
    get a smaller loss.

    Args:
        dense_embeddings: (B, D, h, w) dense image embeddings V in the CLIP space, any norm.
        text_embeddings: (B, K, D) refined text embeddings t, any norm.
        labels: (B, H, W) int64 train ids in [0, K) or ``ignore_index``.
        temperature: fixed softmax temperature tau (0.07 in the paper, not learned).
        ignore_index: label value of unlabeled pixels.

    Returns:
        () loss.
    """
    if (
        dense_embeddings.dim() != 4
        or text_embeddings.dim() != 3
        or labels.dim() != 3
        or dense_embeddings.shape[:2] != (text_embeddings.shape[0], text_embeddings.shape[2])
        or labels.shape[0] != dense_embeddings.shape[0]
    ):
        raise ValueError(
            f"vision-language regularization expects dense embeddings (B, D, h, w), text embeddings (B, K, D) and "
            f"labels (B, H, W) with the same B and D; got {tuple(dense_embeddings.shape)}, "
            f"{tuple(text_embeddings.shape)} and {tuple(labels.shape)}"
        )
    if temperature <= 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = pixel_text_scores(dense_embeddings, text_embeddings)
    logits = F.interpolate(scores / temperature, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    loss_sum = F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction="sum")
    return loss_sum / labels.numel()


def vision_regularization(image_embedding: torch.Tensor, teacher_image_embedding: torch.Tensor) -> torch.Tensor:
    """L_reg^V: mean squared error between the image-level embedding and the frozen teacher's, over B x D.

    Not normalised (plain MSE, not cosine). The teacher side is detached: it is a fixed target.

    Args:
        image_embedding: (B, D) image-level embedding g of the trained encoder.
        teacher_image_embedding: (B, D) embedding g_0 of the frozen pretrained encoder on the same images.

    Returns:
        () loss.
    """
    if image_embedding.dim() != 2 or image_embedding.shape != teacher_image_embedding.shape:
        raise ValueError(
            f"vision regularization expects two (B, D) image embeddings of the same shape, got "
            f"{tuple(image_embedding.shape)} and {tuple(teacher_image_embedding.shape)}; run the frozen teacher "
            f"on the same batch"
        )
    return F.mse_loss(image_embedding.float(), teacher_image_embedding.detach().float())


def _full_precision(device: torch.device) -> torch.autocast:
    """An autocast-free region, so that cosine logits stay float32 under mixed precision.

    With tau = 0.07, a bf16 cosine (8 significant bits) would put errors of up to about 0.06 into the logits.
    """
    return torch.autocast(device_type=device.type, enabled=False)
