"""ViTDet-style simple feature pyramid: one stride-16 ViT map to strides 4/8/16/32 (METHOD.md section 2.1)."""
from __future__ import annotations

import torch
from torch import nn


class SimpleFeaturePyramid(nn.Module):
    """Turns four same-resolution ViT tap maps (stride 16) into a 4-level pyramid.

    Official layout (`fpn1..fpn4`): s4 = ConvT -> BN -> GELU -> ConvT, s8 = ConvT, s16 = identity, s32 = max-pool.
    The BatchNorm becomes SyncBatchNorm under data-parallel training (converted by the training script).
    """

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
            nn.BatchNorm2d(channels),
            nn.GELU(),
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
        )
        self.fpn2 = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.out_channels = [channels] * 4

    def forward(self, taps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Args: taps: 4 maps (B, C, H/16, W/16), any memory layout. Returns: maps at strides 4, 8, 16, 32.

        The taps are copied into dense channels-last tensors, the layout oneDNN computes transposed convolutions
        in. They arrive as views of the ViT tokens (channels-last strides, but the batch stride and offset of the
        whole token sequence), which oneDNN treats as foreign layouts: it then reorders the input and writes the
        4x larger output twice (the three 768-channel transposed convolutions: about 460 ms instead of 230 ms in
        fp32 on one core of the AMX Xeon; the copies of the four 32x32 taps cost about 1 ms).
        """
        taps = [tap.clone(memory_format=torch.channels_last) for tap in taps]
        return [self.fpn1(taps[0]), self.fpn2(taps[1]), self.fpn3(taps[2]), self.fpn4(taps[3])]
