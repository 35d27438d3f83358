"""EVA02-CLIP-L/14 visual encoder (timm trunk inside open_clip) with taps, pyramid and embeddings (METHOD.md 2.2)."""
from __future__ import annotations

import torch
from torch import nn

from tqdm_core.modeling import fused_ops
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
        rope = rope_for_grid(trunk.rope, grid_h, grid_w) if trunk.rope is not None else None
        x = trunk.norm_pre(x)
        fast = not self.training and fused_ops.fused(x) and all(map(fusable_block, trunk.blocks))
        rotation = rope_tables(rope, trunk.num_prefix_tokens, x.dtype) if fast and rope is not None else None
        taps = []
        for index, block in enumerate(trunk.blocks):
            x = fast_block(block, x, rotation) if fast else block(x, rope=rope)
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


def rope_for_grid(rope: nn.Module, grid_h: int, grid_w: int) -> torch.Tensor:
    """timm's concatenated (sin, cos) RoPE table, (grid_h * grid_w, 2 * dim), for this patch grid.

    The trunk's rotary module caches the table of the grid it was built for (36x36 for 512x512 inputs) and
    `get_embed` returns that cache whatever shape is asked, so any other input size (whole-image mode on a
    480x360 or 512x1024 frame) failed in the first attention. Other grids are built from the module's own bands
    and settings, positions rescaled to its reference grid as for the cached one.
    """
    if getattr(rope, "feat_shape", None) in (None, [grid_h, grid_w]):
        return rope.get_embed(shape=[grid_h, grid_w])
    from timm.layers import build_rotary_pos_embed  # timm is loaded with the trunk already

    sin, cos = build_rotary_pos_embed(
        [grid_h, grid_w], bands=rope.bands, in_pixels=rope.in_pixels, ref_feat_shape=rope.ref_feat_shape,
        grid_offset=rope.grid_offset, grid_indexing=rope.grid_indexing, rotate_half=rope.rotate_half,
        grid_type=rope.grid_type, normalize_coords=rope.normalize_coords, device=rope.bands.device)
    return torch.cat([sin, cos], dim=-1)


def fusable_block(block: nn.Module) -> bool:
    """True for the EVA02 blocks `fast_block` reproduces: separate q/k/v projections, no attention gate, q/k
    norms or layer scale, a SwiGLU MLP with its inner LayerNorm (EVA02-CLIP-L/14)."""
    attn, mlp = block.attn, block.mlp
    return (block.gamma_1 is None and block.gamma_2 is None and attn.qkv is None and attn.gate is None
            and isinstance(attn.q_norm, nn.Identity) and isinstance(attn.k_norm, nn.Identity)
            and not getattr(attn, "rotate_half", False) and hasattr(mlp, "fc1_g") and hasattr(mlp, "norm"))


def rope_tables(rope: torch.Tensor, prefix_tokens: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's concatenated (sin, cos) rotary table as the two factors `rotate` needs, prefix tokens included.

    Args:
        rope: (N, 2 * head_dim) sin then cos, each repeated per channel pair, for the N patch tokens.
        prefix_tokens: tokens before the patches (the CLS token), which are not rotated (cos 1, sin 0).
        dtype: the network's dtype.

    Returns:
        cos and signed sin, (prefix + N, head_dim) each: x rotated = x * cos + swap_pairs(x) * signed sin.
    """
    sin, cos = rope.chunk(2, dim=-1)
    sign = torch.tensor([-1.0, 1.0], dtype=sin.dtype, device=sin.device).repeat(sin.shape[-1] // 2)
    cos = torch.cat([cos.new_ones(prefix_tokens, cos.shape[-1]), cos])
    signed_sin = torch.cat([sin.new_zeros(prefix_tokens, sin.shape[-1]), sin * sign])
    return cos.to(dtype), signed_sin.to(dtype)


def rotate(x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """timm's interleaved rotary embedding in three passes: x * cos + [-x1, x0, -x3, x2, ...] * sin.

    Args:
        x: (B, heads, N, head_dim); tables: from `rope_tables`.
    """
    cos, signed_sin = tables
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # [x1, x0, x3, x2, ...]
    return torch.addcmul(x * cos, swapped, signed_sin)


def fast_block(block: nn.Module, x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """timm's `EvaBlock.forward` at inference for a `fusable_block`, with fused kernels (`fused_ops`): biases,
    the SwiGLU gate (its SiLU and its product) and both residual sums inside the GEMMs, the rotary embedding in
    three passes.

    Args:
        x: (B, N, C) tokens; rotation: `rope_tables` of the patch grid, or None without RoPE.

    Returns:
        (B, N, C).
    """
    attn, mlp = block.attn, block.mlp
    batch, tokens, width = x.shape
    normed = block.norm1(x)
    q, k, v = (fused_ops.linear(normed, projection).view(batch, tokens, attn.num_heads, -1).transpose(1, 2)
               for projection in (attn.q_proj, attn.k_proj, attn.v_proj))  # (B, heads, N, C/heads) each
    if rotation is not None:
        q, k = rotate(q, rotation), rotate(k, rotation)
    out = fused_ops.attention(q, k, v)
    out = out.transpose(1, 2).reshape(batch, tokens, width)  # (B, heads, N, C/heads) -> (B, N, C)
    x = fused_ops.linear(attn.norm(out), attn.proj, residual=x)
    normed = block.norm2(x)
    gate = fused_ops.linear(normed, mlp.fc1_g, activation=mlp.act)
    hidden = fused_ops.linear(normed, mlp.fc1_x, product=gate)  # SwiGLU: the gate multiplies inside the GEMM
    return fused_ops.linear(mlp.norm(hidden), mlp.fc2, residual=x)
