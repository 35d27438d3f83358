"""CLIP ViT visual encoder with multi-level taps, simple pyramid and dense CLIP embeddings (METHOD.md 2.1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from tqdm_core.modeling import fused_ops
from tqdm_core.modeling.attention import self_attention
from tqdm_core.modeling.backbone_output import BackboneOutput
from tqdm_core.modeling.simple_feature_pyramid import SimpleFeaturePyramid


def interpolate_grid_embedding(embedding: torch.Tensor, grid: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize a (G*G, C) positional grid to `grid` (align_corners=False, no antialias, as the official code).

    Returns:
        (grid_h * grid_w, C).
    """
    size = int(round(embedding.shape[0] ** 0.5))
    if (size, size) == tuple(grid):
        return embedding
    width = embedding.shape[1]
    as_image = embedding.reshape(1, size, size, width).permute(0, 3, 1, 2)  # (G*G, C) -> (1, C, G, G)
    resized = F.interpolate(as_image.float(), size=grid, mode=mode, align_corners=False).to(embedding.dtype)
    return resized.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], width)  # (1, C, h, w) -> (h*w, C)


class ClipViTBackbone(nn.Module):
    """open_clip `VisionTransformer` run block by block.

    Taps the raw residual stream after `out_indices` (CLS removed, no ln_post) for the pyramid; after the last
    block, `ln_post` then `proj` on all tokens give g (CLS) and V (patches), the DenseCLIP dense embedding.
    """

    def __init__(self, *, visual: nn.Module, out_indices: tuple[int, ...], drop_path_rate: float,
                 double_class_embedding: bool) -> None:
        super().__init__()
        self.visual = visual
        self.out_indices = tuple(out_indices)
        self.double_class_embedding = double_class_embedding
        self.patch_size = visual.conv1.kernel_size[0]
        self.width = visual.conv1.out_channels
        depth = len(visual.transformer.resblocks)
        if max(self.out_indices) >= depth:
            raise ValueError(f"out_indices {self.out_indices} exceed the {depth} blocks of the ViT")
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.drop_paths = nn.ModuleList(DropPath(r) if r > 0 else nn.Identity() for r in rates)
        self.pyramid = SimpleFeaturePyramid(channels=self.width)
        self.out_channels = self.pyramid.out_channels
        self.embed_dim = visual.proj.shape[1]
        self.size_divisor = self.patch_size * 2  # the stride-32 level max-pools the patch grid by 2

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """Args: images: (B, 3, H, W) normalised, H and W multiples of `size_divisor`."""
        visual = self.visual
        x = visual.conv1(images)
        batch, width, grid_h, grid_w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, C, h, w) -> (B, hw, C)
        cls = visual.class_embedding.to(x.dtype)
        if self.double_class_embedding:
            cls = cls + visual.class_embedding.to(x.dtype)
        x = torch.cat([cls.expand(batch, 1, width), x], dim=1)
        pos = visual.positional_embedding.to(x.dtype)
        patch_pos = interpolate_grid_embedding(pos[1:], (grid_h, grid_w), mode="bilinear")
        x = x + torch.cat([pos[:1], patch_pos], dim=0)
        x = visual.ln_pre(x)
        taps = []
        for index, block in enumerate(visual.transformer.resblocks):
            if self.training or not isinstance(block.ls_1, nn.Identity) or not isinstance(block.ls_2, nn.Identity):
                x = x + self.drop_paths[index](block.ls_1(self_attention(block.attn, block.ln_1(x))))
                x = x + self.drop_paths[index](block.ls_2(block.mlp(block.ln_2(x))))
            else:  # nothing between the branches and the sums: the sums join the output projections
                x = self_attention(block.attn, block.ln_1(x), residual=x)
                mlp = block.mlp
                x = fused_ops.feed_forward(block.ln_2(x), mlp.c_fc, mlp.gelu, mlp.c_proj, residual=x)
            if index in self.out_indices:
                taps.append(x[:, 1:].transpose(1, 2).reshape(batch, width, grid_h, grid_w))  # (B, hw, C) -> map
        tokens = visual.ln_post(x) @ visual.proj  # (B, 1 + hw, D)
        dense = tokens[:, 1:].transpose(1, 2).reshape(batch, -1, grid_h, grid_w)  # (B, hw, D) -> (B, D, h, w)
        return BackboneOutput(features=self.pyramid(taps), image_embedding=tokens[:, 0], dense_embeddings=dense)

    def adapt_pretrained_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Resize a pretrained (1 + G*G, C) positional embedding to this model's grid (bilinear, as official)."""
        key = "positional_embedding"
        target = self.visual.positional_embedding.shape[0] - 1
        grid = int(round(target ** 0.5))
        pos = state[key]
        state = dict(state)
        state[key] = torch.cat([pos[:1], interpolate_grid_embedding(pos[1:], (grid, grid), mode="bilinear")])
        return state
