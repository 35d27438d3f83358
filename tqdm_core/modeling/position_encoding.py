"""Normalised 2-D sine positional encoding (DETR / Mask2Former; METHOD.md sections 4 and 5)."""
from __future__ import annotations

import functools
import math

import torch


def sine_position_encoding(height: int, width: int, *, num_feats: int = 128, temperature: float = 10000.0,
                           device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sine/cosine encoding of normalised pixel coordinates (no padding mask: every position is valid).

    Coordinates are cumulative counts 1..H divided by H (plus 1e-6) and scaled by 2*pi; y features come first,
    then x, each interleaving sin (even) and cos (odd) frequencies.

    The encoding depends only on the arguments and the pixel and transformer decoders ask for the same grids on
    every forward pass, so eager calls are cached. A cached tensor is a plain constant (made outside inference
    mode, without autograd history, so training may reuse it); callers must not modify it in place. Under
    torch.compile / torch.export the encoding is traced instead (the compiler folds it into a constant).

    Returns:
        (2 * num_feats, H, W).
    """
    arguments = (height, width, num_feats, temperature, device, dtype)
    return _encode(*arguments) if torch.compiler.is_compiling() else _cached_encode(*arguments)


def _encode(height: int, width: int, num_feats: int, temperature: float, device: torch.device | None,
            dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():
        eps = 1e-6
        scale = 2 * math.pi
        y = torch.arange(1, height + 1, device=device, dtype=torch.float32)[:, None].expand(height, width)
        x = torch.arange(1, width + 1, device=device, dtype=torch.float32)[None, :].expand(height, width)
        y = y / (height + eps) * scale
        x = x / (width + eps) * scale
        dim_t = torch.arange(num_feats, device=device, dtype=torch.float32)
        dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
        pos_x = x[..., None] / dim_t  # (H, W, F)
        pos_y = y[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=-1).flatten(2)  # (H, W, F/2, 2) -> F
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=-1).flatten(2)
        return torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1).to(dtype)  # (H, W, 2F) -> (2F, H, W)


_cached_encode = functools.lru_cache(maxsize=16)(_encode)
