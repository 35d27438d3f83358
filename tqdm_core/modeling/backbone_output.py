"""What every visual backbone returns (METHOD.md section 1, step 1)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BackboneOutput:
    """Multi-level features and CLIP-space embeddings of one batch.

    Attributes:
        features: 4 maps at strides 4, 8, 16, 32: (B, C_i, H/s, W/s).
        image_embedding: g, (B, D) image-level embedding in the CLIP joint space.
        dense_embeddings: V, (B, D, h, w) per-patch embeddings in the CLIP joint space.
    """

    features: list[torch.Tensor]
    image_embedding: torch.Tensor
    dense_embeddings: torch.Tensor
