"""Image-conditioned refinement of the text embeddings: t <- t + gamma * CtxDec(t, [g; V]) (METHOD.md 3.3).

DenseCLIP's "post-model prompting": text tokens attend to the visual context (image embedding plus every dense
embedding) through 3 pre-norm decoder layers of width 256, and the per-channel gamma scales the update.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContextAttention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections and a biased, dropped-out output projection."""

    def __init__(self, *, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.proj = nn.Linear(width, width)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Args: query (B, N, C); memory (B, M, C). Returns (B, N, C)."""
        batch, length, width = query.shape
        head_dim = width // self.heads
        q = self.q_proj(query).view(batch, length, self.heads, head_dim).transpose(1, 2)  # (B, h, N, C/h)
        k = self.k_proj(memory).view(batch, -1, self.heads, head_dim).transpose(1, 2)  # (B, h, M, C/h)
        v = self.v_proj(memory).view(batch, -1, self.heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, length, width)  # (B, h, N, C/h) -> (B, N, C)
        return self.proj_drop(self.proj(out))


class ContextDecoderLayer(nn.Module):
    """Pre-norm: x += SelfAttn(LN x); x += CrossAttn(LN x, memory); x += Drop(MLP(LN x))."""

    def __init__(self, *, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = ContextAttention(width=width, heads=heads, dropout=dropout)
        self.cross_attn = ContextAttention(width=width, heads=heads, dropout=dropout)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, width * 4), nn.GELU(), nn.Dropout(dropout), nn.Linear(width * 4, width))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = self.norm1(x)
        x = x + self.self_attn(q, q)
        x = x + self.cross_attn(self.norm2(x), memory)
        return x + self.dropout(self.mlp(self.norm3(x)))


class ContextDecoder(nn.Module):
    """Refines (B, K, D) text embeddings with the (B, 1 + hw, D) visual context; owns gamma.

    Args (keyword-only):
        embed_dim: D, the CLIP joint-space width.
        width, heads, layers, dropout: decoder size (256, 4, 3, 0.1 in the paper).
        gamma_init: "trunc_normal" reproduces the official re-initialisation (N(0,1) clipped to +-2);
            "small" is DenseCLIP's intended 1e-4.
    """

    def __init__(self, *, embed_dim: int, width: int, heads: int, layers: int, dropout: float,
                 gamma_init: str) -> None:
        super().__init__()
        self.memory_proj = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, width), nn.LayerNorm(width))
        self.text_proj = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, width))
        self.decoder = nn.ModuleList(
            ContextDecoderLayer(width=width, heads=heads, dropout=dropout) for _ in range(layers))
        self.out_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embed_dim))
        self.gamma = nn.Parameter(torch.full((embed_dim,), 1e-4))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if gamma_init == "trunc_normal":
            nn.init.trunc_normal_(self.gamma, std=1.0, a=-2.0, b=2.0)
        elif gamma_init != "small":
            raise ValueError(f"gamma_init must be 'trunc_normal' or 'small', got '{gamma_init}'")

    def forward(self, text: torch.Tensor, visual_context: torch.Tensor) -> torch.Tensor:
        """Args: text (B, K, D); visual_context (B, 1 + hw, D). Returns refined text (B, K, D)."""
        memory = self.memory_proj(visual_context)
        x = self.text_proj(text)
        for layer in self.decoder:
            x = layer(x, memory)
        return text + self.gamma * self.out_proj(x)
