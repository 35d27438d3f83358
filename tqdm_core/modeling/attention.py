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
    if blocked is None and key.shape[1] * heads < width and fused_ops.fused(query):
        return few_key_attention(attn, query, key, value, residual=residual)
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
    q = fused_ops.linear_weights(query, w_q, b_q).view(batch, length, heads, -1).transpose(1, 2)  # (B, h, Nq, C/h)
    k = fused_ops.linear_weights(key, w_k, b_k).view(batch, key.shape[1], heads, -1).transpose(1, 2)  # (B, h, Nk, C/h)
    v = fused_ops.linear_weights(value, w_v, b_v).view(batch, value.shape[1], heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if blocked is None else ~blocked)
    out = out.transpose(1, 2).reshape(batch, length, width)  # (B, heads, Nq, C/heads) -> (B, Nq, C)
    return fused_ops.linear(out, attn.out_proj, residual=residual)


def few_key_attention(attn: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *,
                      residual: torch.Tensor | None = None) -> torch.Tensor:
    """`multi_head_attention` without a mask, for many queries and a few keys (pixels attending to K classes).

    Both projections of the queries' side move to the keys' side: the query projection folds into the keys,
    W_q,h^T k_h^T (C x Nk per head), and the output projection into the values, v_h W_o,h^T (Nk x C per head), so
    the pixels go through two GEMMs of width heads x Nk (152 for 8 heads and 19 classes, below C = 256) and a
    softmax over Nk, instead of two C x C projections and an attention kernel. The output bias is spread over
    every head's values: each head's weights sum to 1. Equal to `multi_head_attention` up to rounding.

    Args:
        query: (B, Nq, C); key, value: (B, Nk, C); residual: optional (B, Nq, C).

    Returns:
        (B, Nq, C).
    """
    batch, length, width = query.shape
    heads, keys = attn.num_heads, key.shape[1]
    head_dim = width // heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
    k = F.linear(key, w_k, b_k).view(batch, keys, heads, head_dim)  # (B, Nk, h, C/h)
    v = F.linear(value, w_v, b_v).view(batch, keys, heads, head_dim)
    scale = head_dim ** -0.5
    # (h, C/h, C) x (B, Nk, h, C/h) -> (B, C, h * Nk): the scaled query projection applied to the keys.
    query_to_scores = torch.einsum("hdc,bkhd->bchk", w_q.view(heads, head_dim, width), k * scale)
    query_to_scores = query_to_scores.reshape(batch, width, heads * keys)
    scores = torch.matmul(query, query_to_scores)  # (B, Nq, h * Nk)
    if b_q is not None:
        scores = scores + torch.einsum("hd,bkhd->bhk", b_q.view(heads, head_dim), k * scale).reshape(batch, 1, -1)
    weights = fused_ops.short_softmax(fused_ops.at_least_fp32(scores.view(batch, length, heads, keys)))
    weights = weights.to(query.dtype)
    # (B, Nk, h, C/h) x (C, h, C/h) -> (B, h * Nk, C): the output projection applied to the values.
    values_out = torch.einsum("bkhd,chd->bhkc", v, attn.out_proj.weight.view(width, heads, head_dim))
    values_out = values_out.reshape(batch, heads * keys, width)
    if attn.out_proj.bias is not None:
        values_out = values_out + attn.out_proj.bias / heads
    weights = weights.view(batch, length, heads * keys)
    if residual is None:
        return torch.matmul(weights, values_out)
    return torch.baddbmm(residual, weights, values_out)


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
    out = fused_ops.attention(qkv[0], qkv[1], qkv[2])
    out = out.transpose(1, 2).reshape(batch, tokens, width)  # (B, heads, N, C/heads) -> (B, N, C)
    return fused_ops.linear(out, attn.out_proj, residual=residual)
