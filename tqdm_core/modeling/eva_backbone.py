"""EVA02-CLIP-L/14 visual encoder (timm trunk inside open_clip) with taps, pyramid and embeddings (METHOD.md 2.2)."""
from __future__ import annotations

import torch
from torch import nn

from tqdm_core.modeling.backbone_output import BackboneOutput
from tqdm_core.modeling.simple_feature_pyramid import SimpleFeaturePyramid
from tqdm_core.modeling.vit_backbone import interpolate_grid_embedding


class EvaViTBackbone(nn.Module):
    """open_clip `TimmModel` around timm's EVA02 trunk, run block by block.

    2-D RoPE comes from the trunk's own rotary module for the actual patch grid, with positions rescaled to its
    reference grid (16x16 for EVA02-L/14). A 512x512 input gives a 36x36 grid covering 504 px: the conv drops the
    last 8 rows and columns, as in the official code. g and V: final LayerNorm, then the head, on all tokens.
    """

    def __init__(self, *, visual: nn.Module, out_indices: tuple[int, ...]) -> None:
        super().__init__()
        self.visual = visual
        trunk = visual.trunk
        self.out_indices = tuple(out_indices)
        if max(self.out_indices) >= len(trunk.blocks):
            raise ValueError(f"out_indices {self.out_indices} exceed the {len(trunk.blocks)} blocks of the EVA trunk")
        self.patch_size = trunk.patch_embed.proj.kernel_size[0]
        self.width = trunk.embed_dim
        self.pyramid = SimpleFeaturePyramid(channels=self.width)
        self.out_channels = self.pyramid.out_channels
        self.embed_dim = trunk.head.out_features
        self.size_divisor = 32  # any size works (the patch conv floors); 32 keeps the pyramid strides exact

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """Args: images: (B, 3, H, W) normalised."""
        trunk = self.visual.trunk
        x = trunk.patch_embed.proj(images)
        batch, width, grid_h, grid_w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, C, h, w) -> (B, hw, C)
        x = torch.cat([trunk.cls_token.to(x.dtype).expand(batch, 1, width), x], dim=1)
        pos = trunk.pos_embed[0].to(x.dtype)
        x = x + torch.cat([pos[:1], interpolate_grid_embedding(pos[1:], (grid_h, grid_w), mode="bicubic")])
        rope = trunk.rope.get_embed(shape=[grid_h, grid_w]) if trunk.rope is not None else None
        x = trunk.norm_pre(x)
        taps = []
        for index, block in enumerate(trunk.blocks):
            x = block(x, rope=rope)
            if index in self.out_indices:
                taps.append(x[:, 1:].transpose(1, 2).reshape(batch, width, grid_h, grid_w))  # (B, hw, C) -> map
        tokens = trunk.head(trunk.norm(x))  # (B, 1 + hw, D)
        dense = tokens[:, 1:].transpose(1, 2).reshape(batch, -1, grid_h, grid_w)  # (B, hw, D) -> (B, D, h, w)
        return BackboneOutput(features=self.pyramid(taps), image_embedding=tokens[:, 0], dense_embeddings=dense)

    def adapt_pretrained_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Resize the pretrained 24x24 absolute positional embedding to this grid: bicubic, no antialias (official);
        drop any RoPE table in the file (it is rebuilt for the grid at construction)."""
        key = "trunk.pos_embed"
        target = self.visual.trunk.pos_embed.shape[1] - 1
        grid = int(round(target ** 0.5))
        state = {k: v for k, v in state.items() if "rope" not in k}
        pos = state[key][0]
        state[key] = torch.cat([pos[:1], interpolate_grid_embedding(pos[1:], (grid, grid), mode="bicubic")])[None]
        return state
