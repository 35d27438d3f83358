"""The segmentation loss of tqdm: Mask2Former's mask-classification loss with fixed matching (METHOD.md 6.1).

Query k always predicts class k (one textual query per class), so there is no Hungarian matching: query k is
matched to the ground-truth mask of class k when class k is present in the crop, and to "no object" otherwise.
Per prediction layer::

    L_seg = 2.0 * L_cls + 5.0 * L_bce + 5.0 * L_dice

summed without re-weighting over the final prediction and every auxiliary one (deep supervision).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tqdm_core.classes import IGNORE_INDEX
from tqdm_core.losses.point_sampling import point_sample, sample_uncertain_points


def check_label_map(labels: torch.Tensor, num_classes: int, *, ignore_index: int = IGNORE_INDEX) -> None:
    """Raise a ValueError unless ``labels`` is a (B, H, W) integer map of train ids in [0, K) or ``ignore_index``."""
    if labels.dim() != 3 or labels.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise ValueError(
            f"labels must be a (B, H, W) integer tensor of train ids, got shape {tuple(labels.shape)} "
            f"dtype {labels.dtype}; convert label images with torch.as_tensor(..., dtype=torch.int64)"
        )
    invalid = ((labels < 0) | (labels >= num_classes)) & (labels != ignore_index)
    if bool(invalid.any()):
        found = torch.unique(labels[invalid]).tolist()[:10]
        raise ValueError(
            f"labels hold values {found} outside the {num_classes} train ids [0, {num_classes - 1}] and the "
            f"ignore value {ignore_index}; map the dataset's label ids to train ids (or 255) before the loss"
        )


def fixed_matching_targets(
    labels: torch.Tensor, num_classes: int, *, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of the fixed query-class matching.

    Args:
        labels: (B, H, W) int64 train ids in [0, K) or ``ignore_index``.
        num_classes: K.
        ignore_index: label value of unlabeled pixels; such pixels belong to no class.

    Returns:
        class_targets: (B, K) int64, k where class k is present in image b, else K ("no object").
        present: (B, K) bool, class k has at least one pixel in image b (query k is a positive).
    """
    batch_size = labels.shape[0]
    image_index = torch.arange(batch_size, device=labels.device).view(batch_size, 1, 1).expand_as(labels)
    valid = labels != ignore_index
    # One bin per (image, class): (B, H, W) -> (N_valid,) flat indices b * K + k.
    flat_index = image_index[valid] * num_classes + labels[valid].long()
    counts = torch.bincount(flat_index, minlength=batch_size * num_classes)
    present = (counts > 0).view(batch_size, num_classes)
    class_ids = torch.arange(num_classes, device=labels.device).expand(batch_size, num_classes)
    class_targets = torch.where(present, class_ids, torch.full_like(class_ids, num_classes))
    return class_targets, present


def global_num_masks(num_local_masks: torch.Tensor) -> torch.Tensor:
    """Mask-loss normaliser: positives per process, averaged over processes, at least 1.

    Under data parallelism each process divides by the same number, so the averaged gradients equal those of one
    big batch normalised by its total number of masks; the minimum of 1 keeps batches without any labelled pixel
    finite.

    Args:
        num_local_masks: () float tensor, positive queries in this process's batch.

    Returns:
        () float tensor >= 1.
    """
    num_masks = num_local_masks.detach().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num_masks)
        num_masks = num_masks / dist.get_world_size()
    return num_masks.clamp(min=1.0)


def sigmoid_bce_loss(point_logits: torch.Tensor, point_targets: torch.Tensor, num_masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on sigmoid mask logits, summed, then divided by num_masks x num_points.

    Args:
        point_logits: (M, P) mask logits at the sampled points.
        point_targets: (M, P) ground-truth mask values in [0, 1] at the same points.
        num_masks: () normaliser (see ``global_num_masks``).

    Returns:
        () loss.
    """
    loss = F.binary_cross_entropy_with_logits(point_logits, point_targets, reduction="sum")
    return loss / (num_masks * point_logits.shape[1])


def dice_loss(point_logits: torch.Tensor, point_targets: torch.Tensor, num_masks: torch.Tensor) -> torch.Tensor:
    """Naive Dice loss per mask, ``1 - (2 sum(p g) + 1) / (sum(p) + sum(g) + 1)``, summed, divided by num_masks.

    "Naive": first powers in the denominator, with a smoothing of 1 (mmdet ``DiceLoss(naive_dice=True, eps=1)``).

    Args:
        point_logits: (M, P) mask logits at the sampled points; p = sigmoid(logit).
        point_targets: (M, P) ground-truth mask values g in [0, 1] at the same points.
        num_masks: () normaliser (see ``global_num_masks``).

    Returns:
        () loss.
    """
    probabilities = point_logits.sigmoid()
    intersection = (probabilities * point_targets).sum(dim=1)
    total = probabilities.sum(dim=1) + point_targets.sum(dim=1)
    per_mask = 1.0 - (2.0 * intersection + 1.0) / (total + 1.0)
    return per_mask.sum() / num_masks


class MaskClassificationLoss(nn.Module):
    """Class cross-entropy plus point-sampled mask BCE and Dice, over the final and all auxiliary predictions.

    Returns weighted terms (each already multiplied by its weight, as the official logs show them), so the
    entries sum to ``"total"``: ``d0.loss_cls, d0.loss_mask, d0.loss_dice, ..., loss_cls, loss_mask, loss_dice``,
    where ``d{i}`` is ``outputs["aux_outputs"][i]`` and the unprefixed names are the final prediction.
    """

    def __init__(
        self,
        *,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        """Set the loss weights and the point sampling.

        Args:
            class_weight: weight of the class cross-entropy (lambda_cls).
            mask_weight: weight of the point-sampled sigmoid BCE (lambda_bce).
            dice_weight: weight of the point-sampled Dice loss (lambda_dice).
            no_object_weight: cross-entropy weight of the "no object" target; real classes weigh 1.
            num_points: points per positive mask for BCE and Dice.
            oversample_ratio: uniform candidates per point for the importance sampling, >= 1.
            importance_sample_ratio: fraction of the points picked by uncertainty, in [0, 1].
            ignore_index: label value of unlabeled pixels; they count as background in every class mask.
        """
        super().__init__()
        if num_points <= 0 or oversample_ratio < 1.0 or not 0.0 <= importance_sample_ratio <= 1.0:
            raise ValueError(
                f"point sampling needs num_points > 0, oversample_ratio >= 1, importance_sample_ratio in [0, 1]; "
                f"got {num_points}, {oversample_ratio}, {importance_sample_ratio}"
            )
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.no_object_weight = no_object_weight
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.ignore_index = ignore_index

    def forward(
        self,
        outputs: Mapping[str, object],
        labels: torch.Tensor,
        *,
        point_coords: Sequence[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute the segmentation loss.

        Args:
            outputs: model outputs with ``pred_logits`` (B, K, K+1) class logits (index K is "no object"),
                ``pred_masks`` (B, K, h, w) mask logits at any resolution, and ``aux_outputs``, a list of dicts
                with the same two keys for the earlier predictions.
            labels: (B, H, W) int64 train ids in [0, K) or ``ignore_index``.
            point_coords: None (training) draws the BCE and Dice points by uncertainty sampling. To reproduce
                the loss values of another run exactly (e.g. the official code's), pass the points it used: one
                (M, P, 2) tensor of (x, y) in [0, 1] per prediction layer, in the order of ``aux_outputs`` then
                the final prediction, where the M rows are the positive (image, class) pairs ordered by image,
                then class (the official ground-truth order) and P is any number of points.

        Returns:
            Dict of () losses: the weighted terms of every layer and their sum ``"total"``.
        """
        layers = [*_aux_outputs(outputs), outputs]
        names = [f"d{i}." for i in range(len(layers) - 1)] + [""]
        shapes = [_prediction_shape(layer, f"outputs['aux_outputs'][{i}]") for i, layer in enumerate(layers[:-1])]
        shapes.append(_prediction_shape(outputs, "outputs"))
        num_classes = shapes[-1][1]
        check_label_map(labels, num_classes, ignore_index=self.ignore_index)
        if any(shape != (labels.shape[0], num_classes) for shape in shapes):
            raise ValueError(
                f"every prediction must cover the {labels.shape[0]} label maps with the same number of classes; "
                f"got (batch, classes) = {shapes} for aux layers 0.. and the final prediction"
            )

        class_targets, present = fixed_matching_targets(labels, num_classes, ignore_index=self.ignore_index)
        num_positive = int(present.sum())
        if point_coords is not None and (
            len(point_coords) != len(layers)
            or any(p.dim() != 3 or p.shape[0] != num_positive or p.shape[2] != 2 for p in point_coords)
        ):
            found = [tuple(p.shape) for p in point_coords]
            raise ValueError(
                f"point_coords must hold one (M, P, 2) tensor per prediction layer ({len(layers)}) with M = "
                f"{num_positive} positive (image, class) pairs in these labels; got shapes {found}"
            )
        num_masks = global_num_masks(present.sum().float())
        positive_image, positive_class = present.nonzero(as_tuple=True)
        class_ids = torch.arange(num_classes, device=labels.device).view(1, num_classes, 1, 1)
        # (B, 1, H, W) == (1, K, 1, 1) -> (B, K, H, W) bool -> (M, H, W) -> (M, 1, H, W): the ground-truth mask of
        # each positive query, with ignore pixels 0 in every mask.
        gt_masks = (labels.unsqueeze(1) == class_ids)[positive_image, positive_class].unsqueeze(1).float()
        class_weights = torch.ones(num_classes + 1, device=labels.device)
        class_weights[num_classes] = self.no_object_weight

        losses: dict[str, torch.Tensor] = {}
        for index, (prefix, layer) in enumerate(zip(names, layers)):
            pred_logits = layer["pred_logits"].float()
            pred_masks = layer["pred_masks"].float()
            # (B, K, K+1) -> (B*K, K+1): one classification per query; a weighted mean over the queries.
            loss_cls = F.cross_entropy(pred_logits.flatten(0, 1), class_targets.flatten(), weight=class_weights)
            points = None if point_coords is None else point_coords[index]
            loss_mask, loss_dice = self._mask_losses(pred_masks[positive_image, positive_class], gt_masks, num_masks,
                                                     points)
            losses[f"{prefix}loss_cls"] = self.class_weight * loss_cls
            losses[f"{prefix}loss_mask"] = self.mask_weight * loss_mask
            losses[f"{prefix}loss_dice"] = self.dice_weight * loss_dice
        losses["total"] = torch.stack(list(losses.values())).sum()
        return losses

    def _mask_losses(
        self,
        mask_logits: torch.Tensor,
        gt_masks: torch.Tensor,
        num_masks: torch.Tensor,
        points: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE and Dice of (M, h, w) positive mask logits against (M, 1, H, W) ground truth at (M, P, 2) points,
        drawn by uncertainty sampling when ``points`` is None."""
        if mask_logits.shape[0] == 0:
            # No positive query: zero losses that still reach the mask head, so every parameter gets a
            # (zero) gradient and data-parallel training does not stall on unused parameters.
            zero = mask_logits.sum() * 0.0
            return zero, zero
        mask_logits = mask_logits.unsqueeze(1)  # (M, h, w) -> (M, 1, h, w)
        if points is None:
            points = sample_uncertain_points(
                mask_logits,
                num_points=self.num_points,
                oversample_ratio=self.oversample_ratio,
                importance_sample_ratio=self.importance_sample_ratio,
            )
        point_logits = point_sample(mask_logits, points)[:, 0]  # (M, 1, P) -> (M, P)
        point_targets = point_sample(gt_masks, points)[:, 0]  # (M, 1, P) -> (M, P)
        bce = sigmoid_bce_loss(point_logits, point_targets, num_masks)
        return bce, dice_loss(point_logits, point_targets, num_masks)


def _aux_outputs(outputs: Mapping[str, object]) -> Sequence[Mapping[str, torch.Tensor]]:
    aux = outputs.get("aux_outputs", [])
    if not isinstance(aux, Sequence):
        raise ValueError(f"outputs['aux_outputs'] must be a list of prediction dicts, got {type(aux).__name__}")
    return aux


def _prediction_shape(prediction: Mapping[str, object], where: str) -> tuple[int, int]:
    """Check the layout of one layer's prediction; return its batch size B and number of classes K."""
    missing = [key for key in ("pred_logits", "pred_masks") if key not in prediction]
    if missing:
        raise ValueError(f"{where} lacks {missing}; pass the dict returned by the tqdm model's forward")
    logits, masks = prediction["pred_logits"], prediction["pred_masks"]
    if logits.dim() != 3 or masks.dim() != 4 or logits.shape[:2] != masks.shape[:2]:
        raise ValueError(
            f"{where}: expected pred_logits (B, Q, K+1) and pred_masks (B, Q, h, w) with the same B and Q, "
            f"got {tuple(logits.shape)} and {tuple(masks.shape)}"
        )
    batch_size, num_queries, num_logits = logits.shape
    if num_queries != num_logits - 1:
        raise ValueError(
            f"{where}: fixed matching needs one query per class (Q == K) and K+1 class logits, "
            f"got Q={num_queries} queries and {num_logits} logits"
        )
    return batch_size, num_queries
