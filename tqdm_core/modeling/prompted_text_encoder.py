"""Frozen CLIP text tower with shared learnable context tokens: the textual object queries (METHOD.md 3.2).

Sequence per class: [SOS][ctx_1..ctx_M][class-name tokens][EOS][pad], length M + name_length. The tower is
frozen; gradients flow through it into the M context vectors. The class embeddings do not depend on the image,
so at inference (eval mode, no grad) they are computed once per class list and cached.
"""
from __future__ import annotations

import open_clip
import torch
from torch import nn


def tokenize(texts: list[str], length: int) -> torch.Tensor:
    """CLIP BPE token ids, padded or truncated to `length` (EOS kept last on truncation).

    Returns:
        (len(texts), length) int64.
    """
    tokenizer = open_clip.SimpleTokenizer(context_length=length)
    return tokenizer(texts, context_length=length)


class PromptedTextEncoder(nn.Module):
    """Text embeddings t_k = E_T([SOS, p, name_k, EOS]) for each class k, with learnable prompt p.

    Args (keyword-only):
        text_tower: an open_clip CLIP (or its `.text` TextTransformer) holding token_embedding,
            positional_embedding, transformer, ln_final and text_projection.
        class_names: ordered class names.
        num_context_tokens: M.
        name_length: tokens reserved for "[SOS] name [EOS] pad" (5 in the paper).
        anchor_template: prompt whose embeddings anchor the language regularizer.
    """

    def __init__(self, *, text_tower: nn.Module, class_names: tuple[str, ...], num_context_tokens: int,
                 name_length: int, anchor_template: str) -> None:
        super().__init__()
        self.sequence_length = num_context_tokens + name_length
        self.num_context_tokens = num_context_tokens
        self.anchor_template = anchor_template
        self.token_embedding = text_tower.token_embedding
        self.transformer = text_tower.transformer
        self.ln_final = text_tower.ln_final
        projection = text_tower.text_projection
        self.text_projection = projection
        width = self.token_embedding.embedding_dim
        if text_tower.positional_embedding.shape[0] < self.sequence_length:
            raise ValueError(f"text tower has {text_tower.positional_embedding.shape[0]} positions, "
                             f"prompt needs {self.sequence_length}")
        # Only the first M + name_length rows are ever used (official code truncates the 77-row table).
        positions = text_tower.positional_embedding.detach()[: self.sequence_length]
        self.positional_embedding = nn.Parameter(positions.clone())
        self.context_tokens = nn.Parameter(torch.empty(num_context_tokens, width))
        nn.init.trunc_normal_(self.context_tokens, std=1.0, a=-2.0, b=2.0)
        causal = torch.full((self.sequence_length, self.sequence_length), float("-inf")).triu(1)
        self.register_buffer("causal_mask", causal, persistent=False)
        self.class_names = tuple(class_names)
        self.register_buffer("class_token_ids", tokenize(list(class_names), name_length), persistent=False)
        self._cache: torch.Tensor | None = None
        for name, parameter in self.named_parameters():
            parameter.requires_grad = name == "context_tokens"

    @property
    def output_dim(self) -> int:
        projection = self.text_projection
        return projection.out_features if isinstance(projection, nn.Linear) else projection.shape[1]

    def _encode(self, embedded: torch.Tensor, eos_index: torch.Tensor) -> torch.Tensor:
        """(N, L, W) token embeddings -> (N, D) projected EOS features."""
        x = embedded + self.positional_embedding.to(embedded.dtype)
        x = self.transformer(x, attn_mask=self.causal_mask.to(x.dtype))
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eos_index]  # (N, L, W) -> (N, W) at EOS
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection

    def forward(self) -> torch.Tensor:
        """Class text embeddings with the learnable context.

        Returns:
            (K, D), not normalised.
        """
        if self._cache is not None and not self.training and not torch.is_grad_enabled():
            return self._cache
        ids = self.class_token_ids
        # Always fp32: K short sequences cost little, and a cached result must not depend on the caller's autocast.
        with torch.autocast(device_type=ids.device.type, enabled=False):
            names = self.token_embedding(ids)  # (K, name_length, W)
            context = self.context_tokens.expand(ids.shape[0], -1, -1)  # (K, M, W)
            embedded = torch.cat([names[:, :1], context, names[:, 1:]], dim=1)  # (K, M + name_length, W)
            eos_index = ids.argmax(dim=-1) + self.num_context_tokens  # EOS has the largest id in CLIP's vocabulary
            embeddings = self._encode(embedded, eos_index)
        if not self.training and not torch.is_grad_enabled():
            self._cache = embeddings
        return embeddings

    @torch.no_grad()
    def anchor_embeddings(self) -> torch.Tensor:
        """Normalised embeddings of `anchor_template` for every class, without learnable context (METHOD.md 6.2).

        Returns:
            (K, D), unit norm.
        """
        prompts = [self.anchor_template.format(name) for name in self.class_names]
        ids = tokenize(prompts, self.sequence_length).to(self.class_token_ids.device)
        embeddings = self._encode(self.token_embedding(ids), ids.argmax(dim=-1))
        return embeddings / embeddings.norm(dim=-1, keepdim=True)

    def train(self, mode: bool = True) -> "PromptedTextEncoder":
        self._cache = None
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):
        self._cache = None  # device or dtype moves invalidate the cached embeddings
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._cache = None
        super()._load_from_state_dict(*args, **kwargs)
