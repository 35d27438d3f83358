"""The fp32 network for CPU inference with channels-last convolution weights; every other tensor shared (issue 14).

oneDNN computes fp32 convolutions fastest in the channels-last layout too: with channels-last inputs and weights
a 1x1 convolution from 768 to 256 channels over three 128x128 maps took 51 ms instead of 119 (NCHW) on a 2-core
AMD EPYC, 256 to 256 channels 28 instead of 57, a 3x3 one 124 instead of 163. A channels-last input with NCHW
weights (what the ViT pyramid's channels-last taps met) was the slowest of all: 155 ms. The model's own weights
stay as they are, so training and `model(images)` run exactly as before; the Predictor runs this copy, which
holds copies of the 2-d convolution weights only (a few MB) and shares every other parameter and buffer with the
model. Like `bf16_network`, it holds the convolution weights as they are when it is built.
"""
from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


def channels_last_network(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) whose 2-d convolution weights are channels-last copies; `model` is unchanged."""
    convolutions = [module for module in model.modules()
                    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))]
    copied = {id(module.weight) for module in convolutions}
    memo: dict[int, object] = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())
                               if id(tensor) not in copied}
    network = copy.deepcopy(model, memo).eval()
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.weight = nn.Parameter(module.weight.detach().contiguous(memory_format=torch.channels_last),
                                         requires_grad=False)
    return network
