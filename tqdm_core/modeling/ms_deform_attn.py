"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch, no compiled extension (METHOD.md section 4).

Two exact formulations of the same sampling, no Python loops over heads or points:
- `gather_multi_scale` (eager default): every bilinear corner is one weighted row of a zero-bordered value table,
  and a single `embedding_bag` sums the weighted rows, so the (queries x points x channels) samples are never
  materialised. About 4x faster than grid_sample on CPU and differentiable in value, weights and locations.
- `sample_multi_scale`: one `grid_sample` per level; used for ONNX export (GridSample, opset 16), where
  `embedding_bag` has no efficient ONNX equivalent.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sample_multi_scale(value: torch.Tensor, spatial_shapes: list[tuple[int, int]], locations: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of bilinear samples of every level's value map (zero outside the map).

    Args:
        value: (B, sum(H_l * W_l), heads, C/heads), levels concatenated in `spatial_shapes` order.
        spatial_shapes: (H_l, W_l) per level.
        locations: (B, Nq, heads, levels, points, 2) sampling positions (x, y) in [0, 1] (pixel-centre convention,
            align_corners=False).
        weights: (B, Nq, heads, levels, points) attention weights.

    Returns:
        (B, Nq, heads * C/heads).
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    grids = 2 * locations - 1  # [0, 1] -> grid_sample's [-1, 1]
    per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    samples = []
    for level, (height, width) in enumerate(spatial_shapes):
        # (B, HW, heads, C/h) -> (B * heads, C/h, H, W)
        value_map = per_level[level].permute(0, 2, 3, 1).reshape(batch * heads, head_dim, height, width)
        # (B, Nq, heads, P, 2) -> (B * heads, Nq, P, 2)
        grid = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, queries, points, 2)
        samples.append(F.grid_sample(value_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    sampled = torch.stack(samples, dim=-2).flatten(-2)  # levels x (B*h, C/h, Nq, P) -> (B*h, C/h, Nq, L*P)
    # (B, Nq, heads, L, P) -> (B * heads, 1, Nq, L * P)
    weights = weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = (sampled * weights.to(sampled.dtype)).sum(-1)  # (B * heads, C/h, Nq)
    return out.view(batch, heads * head_dim, queries).transpose(1, 2)  # -> (B, Nq, C)


def gather_multi_scale(value: torch.Tensor, spatial_shapes: list[tuple[int, int]], locations: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """`sample_multi_scale` (same arguments and result) as one weighted `embedding_bag` over value rows.

    Each level's map gets a zero border (1 pixel before, 2 after) and the pixel coordinates are clamped to that
    border: a corner outside the map then reads a zero row, which is exactly grid_sample's zero padding, with no
    validity masks. Row of (batch b, level position p, head m) = (b * total + p) * heads + m, i.e. the table is
    the padded (B, positions, heads, C/heads) value viewed as rows of C/heads channels.
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    tables, level_starts, row_lengths, total = [], [], [], 0
    for level_value, (height, width) in zip(value.split([h * w for h, w in spatial_shapes], dim=1), spatial_shapes):
        level_map = level_value.reshape(batch, height, width, heads * head_dim)  # (B, HW, h, C/h) -> (B, H, W, C)
        tables.append(F.pad(level_map, (0, 0, 1, 2, 1, 2)).flatten(1, 2))  # (B, (H + 3) * (W + 3), C)
        level_starts.append(total)
        row_lengths.append(width + 3)
        total += (height + 3) * (width + 3)
    table = torch.cat(tables, dim=1).view(-1, head_dim)  # (B, total, C) -> (B * total * heads, C/h)
    device = value.device
    sizes = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=locations.dtype, device=device)[:, None]
    # [0, 1] -> bordered pixel coordinates (pixel centres at +0.5, +1 for the border), (B, Nq, h, L, P, 2).
    pixel = torch.clamp(locations * sizes + 0.5, min=torch.zeros_like(sizes), max=sizes + 1)
    corner = pixel.floor()
    frac = pixel - corner
    linear = torch.stack([1 - frac, frac], dim=-1)  # (B, Nq, h, L, P, 2 axes, 2 corners)
    # (B, Nq, h, L, P, 2 y-corners, 2 x-corners) bilinear weight times attention weight.
    corner_weights = (linear[..., 1, :] * weights[..., None])[..., :, None] * linear[..., 0, None, :]
    corner = corner.long()
    row_stride = torch.tensor(row_lengths, device=device)[:, None] * heads  # (L, 1)
    # First row of every sample: (b * total + start_l + y * (W_l + 3) + x) * heads + m, shape (B, Nq, h, L, P).
    offset = (torch.arange(batch, device=device)[:, None, None] * total
              + torch.tensor(level_starts, device=device)[None, None, :]) * heads  # (B, 1, L)
    offset = offset[:, :, None, :, None] + torch.arange(heads, device=device)[:, None, None]  # (B, 1, h, L, 1)
    first = corner[..., 1] * row_stride + corner[..., 0] * heads + offset
    steps = torch.stack([torch.zeros_like(row_stride), torch.full_like(row_stride, heads), row_stride,
                         row_stride + heads], dim=-1)  # (L, 1, 4): the 2x2 corners, y-major
    rows = first[..., None] + steps  # (B, Nq, h, L, P, 4)
    bag = levels * points * 4
    out = F.embedding_bag(rows.view(-1, bag), table, per_sample_weights=corner_weights.reshape(-1, bag).to(table.dtype),
                          mode="sum")  # (B * Nq * h, C/h)
    return out.view(batch, queries, heads * head_dim)  # bags are (b, q, m)-ordered: a view, no copy


class MultiScaleDeformableAttention(nn.Module):
    """Each query attends to `points` learned offsets around its reference point on every level, per head.

    Initialisation as Deformable DETR (and mmcv): zero offset weights with biases on a per-head direction grid
    scaled by point index, zero attention weights (uniform softmax), xavier value/output projections.
    """

    def __init__(self, *, embed_dim: int, heads: int, levels: int, points: int) -> None:
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by heads {heads}")
        self.heads, self.levels, self.points = heads, levels, points
        self.sampling_offsets = nn.Linear(embed_dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(embed_dim, heads * levels * points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (heads, 2)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        grid = directions[:, None, None, :].repeat(1, self.levels, self.points, 1)  # (heads, L, P, 2)
        grid = grid * torch.arange(1, self.points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for projection in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """
        Args:
            query: (B, Nq, C) content plus position.
            reference_points: (B or 1, Nq, 2) normalised (x, y) in [0, 1].
            value: (B, sum(H_l * W_l), C).
            spatial_shapes: (H_l, W_l) per level.

        Returns:
            (B, Nq, C), without the residual.
        """
        batch, queries, _ = query.shape
        value = self.value_proj(value).view(batch, value.shape[1], self.heads, -1)  # (B, Nv, heads, C/heads)
        offsets = self.sampling_offsets(query).view(batch, queries, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(batch, queries, self.heads, self.levels * self.points)
        weights = weights.softmax(-1).view(batch, queries, self.heads, self.levels, self.points)
        # Offsets are in pixels of each level: divide by (W_l, H_l) to move in normalised coordinates.
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=offsets.dtype, device=offsets.device)
        locations = reference_points[:, :, None, None, None, :] + offsets / normalizer[None, None, None, :, None, :]
        sample = sample_multi_scale if torch.onnx.is_in_onnx_export() else gather_multi_scale
        return self.output_proj(sample(value, spatial_shapes, locations, weights))
