"""Hierarchical CLIP visual tower (open_clip ModifiedResNet, e.g. RN50): the fast backbone family.

Stage outputs layer1..layer4 form the stride 4/8/16/32 pyramid directly. The attention pool gives g as in CLIP;
the dense embeddings V apply the pool's value and output projections to every position (DenseCLIP's dense CLIP
embedding for ResNets), so V lives in the same joint space as g and the text embeddings.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tqdm_core.modeling.backbone_output import BackboneOutput
from tqdm_core.modeling.vit_backbone import interpolate_grid_embedding


class ClipResNetBackbone(nn.Module):
    """open_clip `ModifiedResNet` with its stage outputs and attention-pool projections exposed."""

    def __init__(self, *, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.out_channels = [self._stage_channels(getattr(visual, f"layer{i}")) for i in range(1, 5)]
        self.embed_dim = visual.attnpool.c_proj.out_features
        self.size_divisor = 32

    @staticmethod
    def _stage_channels(stage: nn.Sequential) -> int:
        last = stage[-1]
        return last.bn3.num_features

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """Args: images: (B, 3, H, W) normalised, H and W multiples of 32."""
        visual = self.visual
        x = visual.act1(visual.bn1(visual.conv1(images.to(visual.conv1.weight.dtype))))
        x = visual.act2(visual.bn2(visual.conv2(x)))
        x = visual.act3(visual.bn3(visual.conv3(x)))
        x = visual.avgpool(x)
        features = []
        for stage in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = stage(x)
            features.append(x)
        image_embedding, dense = self._attention_pool(x)
        return BackboneOutput(features=features, image_embedding=image_embedding, dense_embeddings=dense)

    def _attention_pool(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP attention pooling for g and the value path for V.

        Args:
            x: (B, C, h, w) stride-32 features.

        Returns:
            g (B, D) and V (B, D, h, w).
        """
        pool = self.visual.attnpool
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, C, h, w) -> (B, hw, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)  # (B, 1 + hw, C)
        pos = pool.positional_embedding.to(tokens.dtype)
        tokens = tokens + torch.cat([pos[:1], interpolate_grid_embedding(pos[1:], (height, width), "bicubic")])
        heads = pool.num_heads
        head_dim = channels // heads
        query = pool.q_proj(tokens[:, :1]).view(batch, 1, heads, head_dim).transpose(1, 2)  # (B, heads, 1, C/h)
        key = pool.k_proj(tokens).view(batch, -1, heads, head_dim).transpose(1, 2)  # (B, heads, 1 + hw, C/h)
        value = pool.v_proj(tokens)  # (B, 1 + hw, C)
        pooled = F.scaled_dot_product_attention(
            query, key, value.view(batch, -1, heads, head_dim).transpose(1, 2))  # (B, heads, 1, C/h)
        image_embedding = pool.c_proj(pooled.transpose(1, 2).reshape(batch, channels))
        dense = pool.c_proj(value[:, 1:])  # (B, hw, D)
        dense = dense.transpose(1, 2).reshape(batch, -1, height, width)  # (B, hw, D) -> (B, D, h, w)
        return image_embedding, dense

    def adapt_pretrained_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Resize the attention pool's (1 + 7*7, C) positional embedding to this model's grid."""
        key = "attnpool.positional_embedding"
        target = self.visual.attnpool.positional_embedding.shape[0] - 1
        grid = int(round(target ** 0.5))
        pos = state[key]
        state = dict(state)
        state[key] = torch.cat([pos[:1], interpolate_grid_embedding(pos[1:], (grid, grid), mode="bicubic")])
        return state
