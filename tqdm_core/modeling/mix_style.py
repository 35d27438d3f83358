"""MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021): a training-only feature augmentation.

The per-channel mean and standard deviation over space of an early CNN feature map carry an image's style (light,
colour, texture) more than its content. Replacing them with a random mixture of two training images' statistics
makes new styles out of the ones the data has, so the network learns to ignore them. Not part of the tqdm recipe;
measured for the from-scratch default model (issue 13), whose unseen recordings differ from its training ones mostly
in light. Attached as forward hooks: it acts only in training mode, adds no weights and leaves checkpoints, eval
and inference unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Beta
from torch.utils.hooks import RemovableHandle


class MixStyle:
    """Forward hook of a module whose output is a (B, C, H, W) feature map.

    In training, with probability `probability` per call, each image's per-channel mean and standard deviation are
    replaced by lambda * its own + (1 - lambda) * those of another image of the batch (a random permutation),
    lambda ~ Beta(alpha, alpha) per image. The statistics are detached, as in the paper: the mixing itself passes
    no gradient. Draws from torch's global generator (saved and restored with a training checkpoint).
    """

    def __init__(self, name: str, *, probability: float, alpha: float, eps: float = 1e-6) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"MixStyle probability must be in [0, 1], got {probability}")
        if alpha <= 0:
            raise ValueError(f"MixStyle alpha must be > 0, got {alpha}")
        self.name = name
        self.probability = probability
        self.beta = Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
        self.eps = eps

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training:
            return None
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"MixStyle needs a (B, C, H, W) feature map from '{self.name}', got {got}; name "
                             "convolutional stages (e.g. backbone.visual.layer1) in mix_style.layers")
        batch = output.shape[0]
        if batch < 2 or torch.rand(()) >= self.probability:
            return None
        features = output.float()  # statistics in fp32 also under bf16/fp16 autocast
        mean = features.mean(dim=(2, 3), keepdim=True).detach()
        std = (features.var(dim=(2, 3), keepdim=True) + self.eps).sqrt().detach()
        weight = self.beta.sample((batch, 1, 1, 1)).to(features.device)
        partner = torch.randperm(batch, device="cpu").to(features.device)
        mixed_mean = weight * mean + (1 - weight) * mean[partner]
        mixed_std = weight * std + (1 - weight) * std[partner]
        return ((features - mean) / std * mixed_std + mixed_mean).to(output.dtype)


def attach_mix_style(model: nn.Module, layers: Sequence[str], *, probability: float,
                     alpha: float) -> list[RemovableHandle]:
    """Register a `MixStyle` hook on each module named in `layers` (names as `model.named_modules()` gives them)."""
    modules = dict(model.named_modules())
    unknown = [name for name in layers if name not in modules]
    if unknown:
        stages = [name for name in modules if name.startswith("backbone.") and name.count(".") <= 2]
        raise ValueError(f"mix_style.layers names {unknown}, which the model does not have; its backbone modules: "
                         f"{stages}")
    return [modules[name].register_forward_hook(MixStyle(name, probability=probability, alpha=alpha))
            for name in layers]
