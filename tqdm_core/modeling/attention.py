"""Fused multi-head attention over `nn.MultiheadAttention` weights.

Parameters stay in the standard `nn.MultiheadAttention` layout (in_proj_weight, out_proj), which open_clip and
the official checkpoints use; the computation goes through `scaled_dot_product_attention`, and the projections
through `fused_ops` (one oneDNN kernel per projection at CPU inference, the residual addition included).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tqdm_core.modeling import fused_ops


def multi_head_attention(attn: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         blocked: torch.Tensor | None = None, *, residual: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v per head, then the output projection (plus `residual`).

    Args:
        attn: module providing in_proj_weight/in_proj_bias (3C x C packed q, k, v) and out_proj.
        query: (B, Nq, C).
        key, value: (B, Nk, C).
        blocked: optional bool (B, heads, Nq, Nk) or broadcastable; True where attention is NOT allowed.
        residual: optional (B, Nq, C) added to the result.

    Returns:
        (B, Nq, C).
    """
    batch, length, width = query.shape
    heads = attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
    q = fused_ops.linear_weights(query, w_q, b_q).view(batch, length, heads, -1).transpose(1, 2)  # (B, h, Nq, C/h)
    k = fused_ops.linear_weights(key, w_k, b_k).view(batch, key.shape[1], heads, -1).transpose(1, 2)  # (B, h, Nk, C/h)
    v = fused_ops.linear_weights(value, w_v, b_v).view(batch, value.shape[1], heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if blocked is None else ~blocked)
    out = out.transpose(1, 2).reshape(batch, length, width)  # (B, heads, Nq, C/heads) -> (B, Nq, C)
    return fused_ops.linear(out, attn.out_proj, residual=residual)


def self_attention(attn: nn.MultiheadAttention, x: torch.Tensor, *,
                   residual: torch.Tensor | None = None) -> torch.Tensor:
    """Unmasked self-attention with one packed projection (cheaper than three for q = k = v).

    Args:
        x: (B, N, C).
        residual: optional (B, N, C) added to the result.

    Returns:
        (B, N, C).
    """
    batch, tokens, width = x.shape
    heads = attn.num_heads
    qkv = fused_ops.linear_weights(x, attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.view(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)  # (3, B, heads, N, C/heads)
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    out = out.transpose(1, 2).reshape(batch, tokens, width)  # (B, heads, N, C/heads) -> (B, N, C)
    return fused_ops.linear(out, attn.out_proj, residual=residual)
