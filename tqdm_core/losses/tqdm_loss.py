"""The full training objective of tqdm (METHOD.md section 6).

``L = sum_{l=0..9} [2 L_cls^l + 5 L_bce^l + 5 L_dice^l] + 1.0 L_reg^L + 1.0 L_reg^VL + 1.0 L_reg^V``
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tqdm_core.classes import IGNORE_INDEX
from tqdm_core.losses.mask_classification_loss import MaskClassificationLoss
from tqdm_core.losses.regularizers import (
    language_regularization,
    vision_language_regularization,
    vision_regularization,
)


@dataclass
class LossConfig:
    """Weights and switches of the training objective; the defaults are the paper's (official configs)."""

    class_weight: float = 2.0  # lambda_cls, class cross-entropy of every prediction layer
    mask_weight: float = 5.0  # lambda_bce, point-sampled sigmoid BCE of every prediction layer
    dice_weight: float = 5.0  # lambda_dice, point-sampled Dice of every prediction layer
    no_object_weight: float = 0.1  # cross-entropy weight of the "no object" target (absent classes)
    num_points: int = 12544  # points per positive mask for BCE and Dice (112 x 112)
    oversample_ratio: float = 3.0  # uniform candidates per point for the importance sampling
    importance_sample_ratio: float = 0.75  # fraction of the points picked where the mask logit is most uncertain
    language_regularization: bool = True  # L_reg^L: text embeddings vs the "a clean origami of a {class}" anchors
    language_weight: float = 1.0  # weight of L_reg^L (hard-wired to 1 in the official code)
    vision_language_regularization: bool = True  # L_reg^VL: pixel-text cosine map vs the labels
    vision_language_weight: float = 1.0  # weight of L_reg^VL
    vision_language_temperature: float = 0.07  # fixed temperature tau of the pixel-text logits
    vision_regularization: bool = True  # L_reg^V: image embedding vs the frozen pretrained encoder's (teacher)
    vision_weight: float = 1.0  # weight of L_reg^V
    ignore_index: int = IGNORE_INDEX  # label value of unlabeled pixels


class TqdmLoss(nn.Module):
    """Segmentation loss plus the three regularizers, each of which can be switched off.

    Every entry of the returned dict is already weighted, and the entries other than ``"total"`` sum to it:
    the per-layer ``[d{i}.]loss_cls / loss_mask / loss_dice`` of ``MaskClassificationLoss``, then
    ``loss_reg_language``, ``loss_reg_vision_language`` and ``loss_reg_vision`` for the regularizers that are on.
    """

    def __init__(
        self,
        *,
        segmentation_loss: MaskClassificationLoss,
        language_weight: float | None = 1.0,
        vision_language_weight: float | None = 1.0,
        vision_language_temperature: float = 0.07,
        vision_weight: float | None = 1.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        """Combine the segmentation loss with the regularizers.

        Args:
            segmentation_loss: the mask-classification loss over all prediction layers.
            language_weight: weight of L_reg^L; None switches it off.
            vision_language_weight: weight of L_reg^VL; None switches it off.
            vision_language_temperature: fixed temperature of the pixel-text logits, > 0.
            vision_weight: weight of L_reg^V; None switches it off (then no teacher forward is needed).
            ignore_index: label value of unlabeled pixels.
        """
        super().__init__()
        self.segmentation_loss = segmentation_loss
        self.language_weight = language_weight
        self.vision_language_weight = vision_language_weight
        self.vision_language_temperature = vision_language_temperature
        self.vision_weight = vision_weight
        self.ignore_index = ignore_index

    @classmethod
    def from_config(cls, config: LossConfig) -> "TqdmLoss":
        """Build the loss from its config (the one place where the config becomes constructor arguments)."""
        segmentation_loss = MaskClassificationLoss(
            class_weight=config.class_weight,
            mask_weight=config.mask_weight,
            dice_weight=config.dice_weight,
            no_object_weight=config.no_object_weight,
            num_points=config.num_points,
            oversample_ratio=config.oversample_ratio,
            importance_sample_ratio=config.importance_sample_ratio,
            ignore_index=config.ignore_index,
        )
        return cls(
            segmentation_loss=segmentation_loss,
            language_weight=config.language_weight if config.language_regularization else None,
            vision_language_weight=config.vision_language_weight if config.vision_language_regularization else None,
            vision_language_temperature=config.vision_language_temperature,
            vision_weight=config.vision_weight if config.vision_regularization else None,
            ignore_index=config.ignore_index,
        )

    @property
    def needs_teacher(self) -> bool:
        """Whether ``forward`` needs the frozen teacher's image embedding (the vision regularizer is on)."""
        return self.vision_weight is not None

    def forward(
        self,
        outputs: Mapping[str, object],
        labels: torch.Tensor,
        *,
        anchor_embeddings: torch.Tensor | None = None,
        teacher_image_embedding: torch.Tensor | None = None,
        point_coords: Sequence[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute every loss term and the total.

        Args:
            outputs: the model's training outputs: ``pred_logits`` (B, K, K+1), ``pred_masks`` (B, K, h, w),
                ``aux_outputs`` (list of dicts with those two keys), ``text_embeddings`` (B, K, D),
                ``dense_embeddings`` (B, D, h', w'), ``image_embedding`` (B, D).
            labels: (B, H, W) int64 train ids in [0, K) or ``ignore_index``.
            anchor_embeddings: (K, D) "a clean origami of a {class}" text embeddings; needed when the language
                regularizer is on, ignored otherwise.
            teacher_image_embedding: (B, D) image embedding of the frozen pretrained encoder on the same images;
                needed when the vision regularizer is on, ignored otherwise (pass None and skip the teacher).
            point_coords: the mask losses' points, one (M, P, 2) tensor per prediction layer, to reproduce another
                run's values exactly; None (training) samples them (see ``MaskClassificationLoss.forward``).

        Returns:
            Dict of () weighted losses, with their sum under ``"total"``.
        """
        losses = self.segmentation_loss(outputs, labels, point_coords=point_coords)
        total = losses.pop("total")
        if self.language_weight is not None:
            if anchor_embeddings is None:
                raise ValueError(
                    "the language regularizer is on but no anchor_embeddings were given; pass the model's "
                    "'a clean origami of a {class}' anchor embeddings, or set language_regularization=False"
                )
            text_embeddings = _require(outputs, "text_embeddings", "the language regularizer")
            losses["loss_reg_language"] = self.language_weight * language_regularization(
                text_embeddings, anchor_embeddings
            )
        if self.vision_language_weight is not None:
            losses["loss_reg_vision_language"] = self.vision_language_weight * vision_language_regularization(
                _require(outputs, "dense_embeddings", "the vision-language regularizer"),
                _require(outputs, "text_embeddings", "the vision-language regularizer"),
                labels,
                temperature=self.vision_language_temperature,
                ignore_index=self.ignore_index,
            )
        if self.vision_weight is not None:
            if teacher_image_embedding is None:
                raise ValueError(
                    "the vision regularizer is on but no teacher_image_embedding was given; run the frozen "
                    "pretrained encoder (eval mode, no_grad) on the same batch, or set vision_regularization=False"
                )
            losses["loss_reg_vision"] = self.vision_weight * vision_regularization(
                _require(outputs, "image_embedding", "the vision regularizer"), teacher_image_embedding
            )
        for name in ("loss_reg_language", "loss_reg_vision_language", "loss_reg_vision"):
            if name in losses:
                total = total + losses[name]
        losses["total"] = total
        return losses


def _require(outputs: Mapping[str, object], key: str, user: str) -> torch.Tensor:
    if key not in outputs:
        raise ValueError(
            f"model outputs lack '{key}', which {user} needs (found keys {sorted(outputs)}); pass the model's "
            f"forward output as is, or switch that regularizer off in the LossConfig"
        )
    return outputs[key]
