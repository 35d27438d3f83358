"""Pixel decoder: deformable-attention encoder over strides 32/16/8 with text-to-pixel attention in every layer,
then an FPN step to the stride-4 mask feature (METHOD.md section 4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tqdm_core.modeling import fused_ops
from tqdm_core.modeling.attention import multi_head_attention
from tqdm_core.modeling.ms_deform_attn import MultiScaleDeformableAttention
from tqdm_core.modeling.position_encoding import sine_position_encoding


def conv_norm(in_channels: int, out_channels: int, *, kernel_size: int, bias: bool, relu: bool) -> nn.Sequential:
    """Conv + GroupNorm(32) (+ ReLU), initialised as mmcv's ConvModule (kaiming normal, fan_out; zero bias)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if bias:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [conv, nn.GroupNorm(32, out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class PixelEncoderLayer(nn.Module):
    """Post-norm: deformable self-attention -> LN -> text-to-pixel attention -> LN -> FFN -> LN."""

    def __init__(self, *, hidden_dim: int, heads: int, levels: int, points: int, ffn_dim: int,
                 text_attention: bool) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(embed_dim=hidden_dim, heads=heads, levels=levels, points=points)
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.text_attn = nn.MultiheadAttention(hidden_dim, heads, batch_first=True) if text_attention else None
        self.norm2 = nn.LayerNorm(hidden_dim) if text_attention else None
        self.ffn = nn.Sequential(nn.Linear(hidden_dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, hidden_dim))
        self.norm3 = nn.LayerNorm(hidden_dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, reference_positions: torch.Tensor,
                spatial_shapes: list[tuple[int, int]], text: torch.Tensor, text_pos: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, N, C) pixel tokens of all levels; pos: (N, C) their positions (sine + level embedding).
            reference_positions: (1, N, heads * levels * points * 2) fp32, the tokens' reference points in pixels
                of every level (`MultiScaleDeformableAttention.reference_positions`); spatial_shapes: (H_l, W_l).
            text: (B, K, C) projected text embeddings T~; text_pos: (K, C) learned text embeddings e_text.
        """
        x = self.norm1(self.self_attn(x + pos, reference_positions, x, spatial_shapes, residual=x))
        if self.text_attn is not None:
            # Pixels attend to the class texts: Q = P + pos, K = T~ + e_text, V = T~.
            x = self.norm2(multi_head_attention(self.text_attn, x + pos, text + text_pos, text, residual=x))
        return self.norm3(fused_ops.feed_forward(x, self.ffn[0], self.ffn[1], self.ffn[2], residual=x))


class PixelDecoder(nn.Module):
    """Text-aware multi-scale deformable pixel decoder.

    Args (keyword-only):
        in_channels: channels of the backbone maps at strides 4, 8, 16, 32.
        text_dim: D, width of the text embeddings.
        num_classes: K (one learned text position embedding per class).
        hidden_dim, encoder_layers, heads, points, ffn_dim: encoder size (256, 6, 8, 4, 2048 in the paper).
        final_norm: official quirk, an extra LayerNorm after the last encoder layer.
        text_attention: text-to-pixel attention in every encoder layer.
    """

    num_levels = 3  # the encoder runs on strides 32, 16, 8; stride 4 joins in the FPN step

    def __init__(self, *, in_channels: list[int], text_dim: int, num_classes: int, hidden_dim: int,
                 encoder_layers: int, heads: int, points: int, ffn_dim: int, final_norm: bool,
                 text_attention: bool) -> None:
        super().__init__()
        # Input projections, low to high resolution (strides 32, 16, 8).
        self.input_convs = nn.ModuleList(
            conv_norm(in_channels[i], hidden_dim, kernel_size=1, bias=True, relu=False) for i in (3, 2, 1))
        self.level_encoding = nn.Embedding(self.num_levels, hidden_dim)
        self.encoder = nn.ModuleList(
            PixelEncoderLayer(hidden_dim=hidden_dim, heads=heads, levels=self.num_levels, points=points,
                              ffn_dim=ffn_dim, text_attention=text_attention)
            for _ in range(encoder_layers))
        self.final_norm = nn.LayerNorm(hidden_dim) if final_norm else None
        self.text_projection = nn.Linear(text_dim, hidden_dim) if text_attention else None
        self.text_position_embedding = nn.Embedding(num_classes, hidden_dim) if text_attention else None
        self.lateral_conv = conv_norm(in_channels[0], hidden_dim, kernel_size=1, bias=False, relu=False)
        self.output_conv = conv_norm(hidden_dim, hidden_dim, kernel_size=3, bias=False, relu=True)
        self.mask_feature = nn.Conv2d(hidden_dim, hidden_dim, kernel_size=1)
        self.hidden_dim = hidden_dim

    def forward(self, features: list[torch.Tensor], text: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """
        Args:
            features: backbone maps at strides 4, 8, 16, 32: (B, C_i, H/s, W/s).
            text: (B, K, D) text embeddings.

        Returns:
            mask_feature (B, C, H/4, W/4) and the encoder memories at strides 32, 16, 8: (B, C, H/s, W/s).
        """
        batch = text.shape[0]
        tokens, positions, references, shapes = [], [], [], []
        for level, feature in enumerate((features[3], features[2], features[1])):
            x = self.input_convs[level](feature)
            height, width = x.shape[-2:]
            shapes.append((height, width))
            tokens.append(x.flatten(2).transpose(1, 2))  # (B, C, H, W) -> (B, HW, C)
            pos = sine_position_encoding(height, width, num_feats=self.hidden_dim // 2, device=x.device, dtype=x.dtype)
            pos = pos.flatten(1).transpose(0, 1) + self.level_encoding.weight[level].to(x.dtype)  # (HW, C)
            positions.append(pos)
            # Reference points in fp32 whatever the network's dtype (bf16 cannot hold (i + 0.5) / 256).
            ys = (torch.arange(height, device=x.device, dtype=torch.float32) + 0.5) / height
            xs = (torch.arange(width, device=x.device, dtype=torch.float32) + 0.5) / width
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            references.append(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1))  # (HW, 2) as (x, y)
        x = torch.cat(tokens, dim=1)
        pos = torch.cat(positions, dim=0)
        reference_points = torch.cat(references, dim=0)[None]
        if self.text_projection is not None:
            text_tokens = self.text_projection(text)
            text_pos = self.text_position_embedding.weight.to(text_tokens.dtype)
        else:
            text_tokens = text_pos = None
        # The reference points in pixels of every level, laid out for the deformable attention: once for all layers.
        reference_positions = (self.encoder[0].self_attn.reference_positions(reference_points, shapes)
                               if len(self.encoder) else None)
        for layer in self.encoder:
            x = layer(x, pos, reference_positions, shapes, text_tokens, text_pos)
        if self.final_norm is not None:
            x = self.final_norm(x)
        memories = [  # channels-last views of the tokens, no copy
            level_tokens.reshape(batch, h, w, -1).permute(0, 3, 1, 2)  # (B, HW, C) -> (B, C, H, W)
            for level_tokens, (h, w) in zip(x.split([h * w for h, w in shapes], dim=1), shapes)
        ]
        lateral = self.lateral_conv(features[0])
        # Upsample in the lateral's memory format (channels-last in the bf16 network, contiguous in fp32), so that
        # the sum reads both maps in the same order.
        channels_last = lateral.is_contiguous(memory_format=torch.channels_last) and not lateral.is_contiguous()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        coarsest = memories[-1].contiguous(memory_format=layout)
        upsampled = F.interpolate(coarsest, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        mask_feature = self.mask_feature(self.output_conv(lateral + upsampled))
        return mask_feature, memories
