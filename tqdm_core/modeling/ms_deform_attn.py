"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch, no compiled extension (METHOD.md section 4).

Sampling positions are in pixels of each level: (x, y) with the top-left corner of the map at (0, 0) and pixel
centres at integer + 0.5, i.e. a normalised location times (W_l, H_l) (grid_sample's align_corners=False).

Two exact formulations of the same sampling, no Python loops over heads or points:
- `gather_multi_scale` (eager default): every bilinear corner is one weighted row of a zero-bordered value table,
  and a single `embedding_bag` sums the weighted rows, so the (queries x points x channels) samples are never
  materialised. About 4x faster than grid_sample on CPU and differentiable in value, weights and positions.
- `sample_multi_scale`: one `grid_sample` per level; used for ONNX export (GridSample, opset 16), where
  `embedding_bag` has no efficient ONNX equivalent.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tqdm_core.modeling import fused_ops


def sample_multi_scale(value: torch.Tensor, spatial_shapes: list[tuple[int, int]], positions: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of bilinear samples of every level's value map (zero outside the map).

    Args:
        value: (B, sum(H_l * W_l), heads, C/heads), levels concatenated in `spatial_shapes` order.
        spatial_shapes: (H_l, W_l) per level.
        positions: (B, Nq, heads, levels, points, 2) sampling positions (x, y) in pixels of each level.
        weights: (B, Nq, heads, levels, points) attention weights.

    Returns:
        (B, Nq, heads * C/heads).
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = positions.shape
    sizes = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=positions.dtype, device=positions.device)
    grids = 2 * positions / sizes[:, None] - 1  # pixels -> grid_sample's [-1, 1]
    per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    samples = []
    for level, (height, width) in enumerate(spatial_shapes):
        # (B, HW, heads, C/h) -> (B * heads, C/h, H, W)
        value_map = per_level[level].permute(0, 2, 3, 1).reshape(batch * heads, head_dim, height, width)
        # (B, Nq, heads, P, 2) -> (B * heads, Nq, P, 2)
        grid = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, queries, points, 2)
        samples.append(F.grid_sample(value_map, grid.to(value_map.dtype), mode="bilinear", padding_mode="zeros",
                                     align_corners=False))
    sampled = torch.stack(samples, dim=-2).flatten(-2)  # levels x (B*h, C/h, Nq, P) -> (B*h, C/h, Nq, L*P)
    # (B, Nq, heads, L, P) -> (B * heads, 1, Nq, L * P)
    weights = weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = (sampled * weights.to(sampled.dtype)).sum(-1)  # (B * heads, C/h, Nq)
    return out.view(batch, heads * head_dim, queries).transpose(1, 2)  # -> (B, Nq, C)


def gather_multi_scale(value: torch.Tensor, spatial_shapes: list[tuple[int, int]], positions: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """`sample_multi_scale` (same arguments and result) as one weighted `embedding_bag` over value rows.

    Each level's map gets a zero border (1 pixel before, 2 after) and the pixel coordinates are clamped to that
    border: a corner outside the map then reads a zero row, which is exactly grid_sample's zero padding, with no
    validity masks. Row of (batch b, level position p, head m) = (b * total + p) * heads + m, i.e. the table is
    the bordered (B, positions, heads, C/heads) value viewed as rows of C/heads channels.

    The per-sample arithmetic runs on x and y planes of shape (B, Nq, heads, levels, points) against constants of
    shape (heads, levels, points): every operation then streams over long contiguous blocks, where broadcasting
    over trailing dimensions of size 2 or 4 would run elementwise loops a few elements long (several times
    slower on CPU).
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = positions.shape
    arguments = (tuple(spatial_shapes), batch, heads, points, positions.dtype, value.device)
    # Traced (compile) graphs build the constants in the graph; eager calls reuse them.
    layout = _build_table_layout(*arguments) if torch.compiler.is_compiling() else _table_layout(*arguments)
    table = value.new_zeros(batch, layout.total, heads * head_dim)  # (B, bordered positions, C)
    level_values = value.split([h * w for h, w in spatial_shapes], dim=1)
    for level_value, start, (height, width) in zip(level_values, layout.level_starts, spatial_shapes):
        bordered = table[:, start:start + (height + 3) * (width + 3)].view(batch, height + 3, width + 3, -1)
        bordered[:, 1:height + 1, 1:width + 1] = level_value.reshape(batch, height, width, -1)  # (B, HW, h, C/h)
    table = table.view(-1, head_dim)  # (B * total * heads, C/heads)
    # Bordered coordinates (+0.5 to the pixel index, +1 for the border), clamped into the border.
    x = torch.clamp(positions[..., 0] + 0.5, min=layout.zero, max=layout.x_limits)  # (B, Nq, h, L, P)
    y = torch.clamp(positions[..., 1] + 0.5, min=layout.zero, max=layout.y_limits)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    below = weights * fy  # the attention weight split between the upper and lower row of corners
    above = weights - below
    left = 1 - fx
    # The 2x2 corners, y-major, stacked before (level, point): each bag (b, q, m) holds its 4 x L x P samples
    # contiguously, and the stack copies L x P blocks instead of single elements.
    corner_weights = torch.stack([above * left, above * fx, below * left, below * fx], dim=-3)  # (B, Nq, h, 4, L, P)
    # First row of every sample: (b * total + start_l + y * (W_l + 3) + x) * heads + m, int32 (B, Nq, h, L, P).
    first = torch.addcmul(layout.base, y0.int(), layout.row_stride).add_(x0.int(), alpha=heads)
    rows = first[:, :, :, None] + layout.corner_steps  # (B, Nq, h, 4, L, P)
    bag = levels * points * 4
    out = F.embedding_bag(rows.view(-1, bag), table, per_sample_weights=corner_weights.reshape(-1, bag).to(table.dtype),
                          mode="sum")  # (B * Nq * h, C/h)
    return out.view(batch, queries, heads * head_dim)  # bags are (b, q, m)-ordered: a view, no copy


@dataclass(frozen=True)
class TableLayout:
    """Where `gather_multi_scale` finds every level in its bordered value table, as constant blocks.

    Attributes:
        level_starts: first bordered position of each level; total: bordered positions per image.
        zero: 0-d lower clamp; x_limits, y_limits: (heads, L, P) upper clamps W_l + 1 and H_l + 1.
        row_stride: (heads, L, P) int32 rows between vertically adjacent pixels, (W_l + 3) * heads.
        base: (B, 1, heads, L, P) int32 row of the first pixel of level l, head m, image b.
        corner_steps: (heads, 4, L, P) int32 rows from a sample's first corner to its 4 corners.
    """

    level_starts: tuple[int, ...]
    total: int
    zero: torch.Tensor
    x_limits: torch.Tensor
    y_limits: torch.Tensor
    row_stride: torch.Tensor
    base: torch.Tensor
    corner_steps: torch.Tensor


def _build_table_layout(spatial_shapes: tuple[tuple[int, int], ...], batch: int, heads: int, points: int,
                        dtype: torch.dtype, device: torch.device) -> TableLayout:
    """The constants of `gather_multi_scale` for one input size (about 15 small tensors). Cached for eager calls
    (`_table_layout`): plain tensors made outside inference mode, as the cached position encodings."""
    levels = len(spatial_shapes)
    level_rows = [(height + 3) * (width + 3) for height, width in spatial_shapes]
    level_starts = [0, *itertools.accumulate(level_rows)][:-1]
    total = sum(level_rows)
    with torch.inference_mode(False), torch.no_grad():

        def per_level(values: list[float], kind: torch.dtype) -> torch.Tensor:
            """(heads, levels, points) contiguous block holding one value per level."""
            return torch.tensor(values, dtype=kind, device=device)[None, :, None].repeat(heads, 1, points)

        row_stride = per_level([(width + 3) * heads for _, width in spatial_shapes], torch.int32)
        starts = torch.tensor(level_starts, dtype=torch.int32, device=device)
        base = (torch.arange(batch, dtype=torch.int32, device=device)[:, None] * total + starts) * heads  # (B, L)
        base = base[:, None, None, :, None] + torch.arange(heads, dtype=torch.int32, device=device)[:, None, None]
        steps = torch.stack([torch.zeros_like(row_stride), torch.full_like(row_stride, heads), row_stride,
                             row_stride + heads], dim=-3)  # +0, +heads (right), +row (below), +row + heads
        return TableLayout(level_starts=tuple(level_starts), total=total,
                           zero=torch.zeros((), dtype=dtype, device=device),
                           x_limits=per_level([width + 1 for _, width in spatial_shapes], dtype),
                           y_limits=per_level([height + 1 for height, _ in spatial_shapes], dtype),
                           row_stride=row_stride, base=base.expand(batch, 1, heads, levels, points).contiguous(),
                           corner_steps=steps)


_table_layout = functools.lru_cache(maxsize=16)(_build_table_layout)


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

    def reference_positions(self, reference_points: torch.Tensor,
                            spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """Reference points in pixels of every level, laid out like the `sampling_offsets` output.

        The sampling position is reference + offset; with the reference repeated for every head and point (once
        per pixel-decoder pass, shared by its layers) the sum is one contiguous pass per layer.

        Args:
            reference_points: (B or 1, Nq, 2) normalised (x, y) in [0, 1].
            spatial_shapes: (H_l, W_l) per level.

        Returns:
            (B or 1, Nq, heads * levels * points * 2), fp32 (or fp64 for fp64 inputs).
        """
        batch, queries, _ = reference_points.shape
        reference_points = fused_ops.at_least_fp32(reference_points)
        sizes = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=reference_points.dtype,
                             device=reference_points.device)
        pixels = reference_points[:, :, None, :] * sizes  # (B, Nq, L, 2)
        return pixels[:, :, None, :, None, :].expand(batch, queries, self.heads, self.levels, self.points, 2).reshape(
            batch, queries, -1)

    def forward(self, query: torch.Tensor, reference_positions: torch.Tensor, value: torch.Tensor,
                spatial_shapes: list[tuple[int, int]], *, residual: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            query: (B, Nq, C) content plus position.
            reference_positions: (B or 1, Nq, heads * levels * points * 2) fp32, from `reference_positions`.
            value: (B, sum(H_l * W_l), C).
            spatial_shapes: (H_l, W_l) per level.
            residual: optional (B, Nq, C) added to the result.

        Returns:
            (B, Nq, C).
        """
        batch, queries, _ = query.shape
        value = fused_ops.linear(value, self.value_proj).view(batch, value.shape[1], self.heads, -1)  # (B, N, h, C/h)
        # Sampling positions and weights in fp32 whatever the network's dtype: a bf16 position on a 128-pixel level
        # would be off by up to a quarter pixel. The offsets are in pixels of each level.
        positions = reference_positions + fused_ops.linear(query, self.sampling_offsets)  # fp32 + network dtype
        positions = positions.view(batch, queries, self.heads, self.levels, self.points, 2)
        logits = fused_ops.at_least_fp32(fused_ops.linear(query, self.attention_weights))
        logits = logits.view(batch, queries, self.heads, -1)  # (B, Nq, h, L * P)
        weights = fused_ops.short_softmax(logits).view(batch, queries, self.heads, self.levels, self.points)
        sample = sample_multi_scale if torch.onnx.is_in_onnx_export() else gather_multi_scale
        return fused_ops.linear(sample(value, spatial_shapes, positions, weights), self.output_proj, residual=residual)
