"""Masked-attention transformer decoder with textual object queries, and its class/mask heads (METHOD.md 3.4, 5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tqdm_core.modeling import fused_ops
from tqdm_core.modeling.attention import multi_head_attention
from tqdm_core.modeling.position_encoding import sine_position_encoding


class MaskedAttentionDecoderLayer(nn.Module):
    """Post-norm: masked cross-attention -> LN -> self-attention -> LN -> FFN -> LN."""

    def __init__(self, *, hidden_dim: int, heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(hidden_dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.self_attn = nn.MultiheadAttention(hidden_dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(nn.Linear(hidden_dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, hidden_dim))
        self.norm3 = nn.LayerNorm(hidden_dim)

    def forward(self, query: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor, memory_keys: torch.Tensor,
                blocked: torch.Tensor) -> torch.Tensor:
        """
        Args:
            query: (B, Q, C); query_pos: (Q, C) learned query positions.
            memory: (B, N, C) one level's features; memory_keys: (B, N, C) the memory plus its sine positions
                (the keys' input, shared by the layers that attend to this level).
            blocked: (B, 1, Q, N) bool, True where a query may not look (outside its predicted mask); the same
                for every head, so it stays un-expanded and attention broadcasts it.
        """
        query = self.norm1(multi_head_attention(self.cross_attn, query + query_pos, memory_keys, memory, blocked,
                                                residual=query))
        q = query + query_pos
        query = self.norm2(multi_head_attention(self.self_attn, q, q, query, residual=query))
        return self.norm3(fused_ops.feed_forward(query, self.ffn[0], self.ffn[1], self.ffn[2], residual=query))


class TransformerDecoder(nn.Module):
    """Mask2Former decoder with exactly one query per class, initialised from the text embeddings.

    Layer l attends to level l mod 3 (strides 32, 16, 8). Predictions are made from the initial queries and after
    every layer; all of them are returned because every one is supervised.

    Args (keyword-only):
        text_dim: D, width of the text embeddings.
        num_classes: K, the number of queries and of non-"no object" class logits.
        hidden_dim, layers, heads, ffn_dim: decoder size (256, 9, 8, 2048 in the paper).
        textual_queries: query content = MLP(text embedding); False uses learned query features (ablation).
        num_levels: memory levels cycled through.
    """

    def __init__(self, *, text_dim: int, num_classes: int, hidden_dim: int, layers: int, heads: int, ffn_dim: int,
                 textual_queries: bool, num_levels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_levels = num_levels
        if textual_queries:
            self.query_feat_mlp = nn.Sequential(
                nn.Linear(text_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, hidden_dim))
            self.query_feat = None
        else:
            self.query_feat_mlp = None
            self.query_feat = nn.Embedding(num_classes, hidden_dim)
        self.query_embed = nn.Embedding(num_classes, hidden_dim)
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        self.layers = nn.ModuleList(
            MaskedAttentionDecoderLayer(hidden_dim=hidden_dim, heads=heads, ffn_dim=ffn_dim) for _ in range(layers))
        self.post_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)  # last logit: "no object"
        self.mask_embed = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True), nn.Linear(hidden_dim, hidden_dim))

    def _predict(self, query: torch.Tensor, mask_feature: torch.Tensor | None, attention_feature: torch.Tensor | None,
                 attention_size: tuple[int, int] | None) -> tuple[torch.Tensor, ...]:
        """Class and mask logits of the current queries, and the attention mask for the next layer.

        Args:
            query: (B, Q, C).
            mask_feature: (B, C, H/4, W/4), or None: no full-resolution mask logits wanted.
            attention_feature: None (resize the full-resolution mask logits to `attention_size`), or the mask
                feature already resized to `attention_size`, (B, C, h, w).
            attention_size: (h, w) of the next layer's memory level, or None when no layer follows.

        Returns:
            class logits (B, Q, K + 1), mask logits (B, Q, H/4, W/4) or None, and (B, 1, Q, h*w) bool "blocked"
            (detached; rows with nothing allowed are fully unblocked) or None when no layer follows.
        """
        out = self.post_norm(query)
        class_logits = self.class_embed(out)
        mask_embedding = self.mask_embed(out)
        mask_logits = None if mask_feature is None else mask_product(mask_embedding, mask_feature)
        if attention_size is None:
            return class_logits, mask_logits, None
        if attention_feature is None:
            resized = F.interpolate(mask_logits, size=attention_size, mode="bilinear", align_corners=False)
        else:
            resized = mask_product(mask_embedding, attention_feature)
        blocked = (resized.flatten(2).sigmoid() < 0.5)[:, None]  # (B, Q, h, w) -> (B, 1, Q, hw)
        blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
        return class_logits, mask_logits, blocked.detach()

    def forward(self, memories: list[torch.Tensor], mask_feature: torch.Tensor, text: torch.Tensor, *,
                auxiliary: bool = True) -> list[dict[str, torch.Tensor]]:
        """
        Args:
            memories: pixel-decoder maps at strides 32, 16, 8: (B, C, H_l, W_l).
            mask_feature: (B, C, H/4, W/4).
            text: (B, K, D) text embeddings.
            auxiliary: return every layer's predictions (training supervises them all). False (inference)
                returns only the final one and computes the intermediate masks at the attention resolution only:
                the bilinear resize of the mask logits is linear, so it moves onto the mask feature, resized once
                per level instead of once per layer (equal up to rounding; no full-resolution product per layer).

        Returns:
            layers + 1 dicts {"pred_logits": (B, Q, K + 1), "pred_masks": (B, Q, H/4, W/4)}, last = final; only
            the final one without `auxiliary`.
        """
        batch = mask_feature.shape[0]
        levels, level_keys, sizes = [], [], []
        for index, memory in enumerate(memories[: self.num_levels]):
            height, width = memory.shape[-2:]
            sizes.append((height, width))
            levels.append(memory.flatten(2).transpose(1, 2) + self.level_embed.weight[index].to(memory.dtype))
            pos = sine_position_encoding(height, width, num_feats=memory.shape[1] // 2, device=memory.device,
                                         dtype=memory.dtype)
            level_keys.append(levels[-1] + pos.flatten(1).transpose(0, 1))  # + (C, H, W) -> (HW, C) positions
        if self.query_feat_mlp is not None:
            query = self.query_feat_mlp(text)
        else:
            query = self.query_feat.weight[None].expand(batch, -1, -1)
        query_pos = self.query_embed.weight.to(query.dtype)
        resized_features = {} if auxiliary else {
            size: F.interpolate(mask_feature, size=size, mode="bilinear", align_corners=False) for size in sizes}
        predictions = []

        def predict(query: torch.Tensor, next_size: tuple[int, int] | None) -> torch.Tensor | None:
            """Predict from the current queries (kept if auxiliary or final); the next layer's attention mask."""
            final = next_size is None
            class_logits, mask_logits, blocked = self._predict(
                query, mask_feature if auxiliary or final else None, resized_features.get(next_size), next_size)
            if auxiliary or final:
                predictions.append({"pred_logits": class_logits, "pred_masks": mask_logits})
            return blocked

        blocked = predict(query, sizes[0] if self.layers else None)
        for index, layer in enumerate(self.layers):
            level = index % self.num_levels
            query = layer(query, query_pos, levels[level], level_keys[level], blocked)
            blocked = predict(query, sizes[(index + 1) % self.num_levels] if index + 1 < len(self.layers) else None)
        return predictions


def mask_product(mask_embedding: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """Mask logits: every query's embedding dotted with the feature at every position.

    Args:
        mask_embedding: (B, Q, C).
        feature: (B, C, H, W), contiguous or channels-last (read in place either way).

    Returns:
        (B, Q, H, W).
    """
    batch, channels, height, width = feature.shape
    if feature.is_contiguous():
        return torch.matmul(mask_embedding, feature.flatten(2)).view(batch, -1, height, width)  # (B, Q, HW)
    # Channels-last (the bf16 network): (B, HW, C) @ (B, C, Q) reads the map in place, and the (B, HW, Q) product
    # is a channels-last view of (B, Q, H, W).
    tokens = feature.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # (B, C, H, W) -> (B, HW, C)
    return torch.matmul(tokens, mask_embedding.transpose(1, 2)).transpose(1, 2).view(batch, -1, height, width)
