"""The network in bf16 for CPU inference: weights converted once, fp32 kept where precision matters (issue 14).

Autocast re-casts every fp32 weight to bf16 on every call (27% of a ViT-B/16 forward on an AMX Xeon). The
Predictor instead runs a copy of the model whose weights were converted once, when it was built. Kept in fp32:

- the text encoder: it runs once per class list and its embeddings are cached; the copy shares it (and its
  cache) with the original model instead of copying it;
- the parameters and running statistics of every LayerNorm, GroupNorm and BatchNorm: PyTorch's CPU kernels take
  bf16 inputs with fp32 parameters, compute the statistics in fp32 and return bf16, at no extra cost;
- what the modules compute in fp32 themselves: deformable-attention sampling positions and weights
  (`MultiScaleDeformableAttention`), reference points, positional-grid resizes, and the semantic scores
  (`InferenceGraph`), which the Predictor averages over windows in fp32.

open_clip's QuickGELU, x * sigmoid(1.702 x), has no fused oneDNN form. In the copy it becomes SiLU with the
factor folded into the weights around it: QuickGELU(W x + b) = SiLU(1.702 W x + 1.702 b) / 1.702, and the
1 / 1.702 joins the next projection's weight (computed in fp32 before rounding to bf16).

Convolution weights are stored channels-last: oneDNN's bf16 convolutions work in that layout, and on contiguous
(NCHW) tensors PyTorch reorders every input and output around them (a 1x1 convolution over a 768-channel
128x128 map took 120 ms instead of 8 on one core). The activations follow the weights' layout from the first convolution on.
"""
from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from tqdm_core.modeling.fused_ops import QUICK_GELU_FACTOR

FP32_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def bf16_network(model: nn.Module) -> nn.Module:
    """A bf16 copy of a TqdmSegmentor for CPU inference (eval mode, no gradients); `model` is left unchanged.

    The weights are copied as they are now: build a new copy after changing the model's weights.
    """
    # Imported here: the model already loaded open_clip, and importing the Predictor's module (the node's
    # parameter checks read its constants) must not.
    from open_clip.transformer import QuickGELU, ResidualAttentionBlock

    text_encoder = model.text_encoder
    shared = {id(t) for t in itertools.chain(text_encoder.parameters(), text_encoder.buffers())}
    fp32 = {id(t) for module in model.modules() if isinstance(module, FP32_MODULES)
            for t in itertools.chain(module.parameters(recurse=False), module.buffers(recurse=False))}
    quick_gelu_blocks = [name for name, module in model.named_modules()
                         if isinstance(module, ResidualAttentionBlock) and isinstance(module.mlp.gelu, QuickGELU)
                         and not any(id(p) in shared for p in module.parameters())]
    factors = {}
    for name in quick_gelu_blocks:
        mlp = model.get_submodule(name).mlp
        factors.update({id(mlp.c_fc.weight): QUICK_GELU_FACTOR, id(mlp.c_fc.bias): QUICK_GELU_FACTOR,
                        id(mlp.c_proj.weight): 1.0 / QUICK_GELU_FACTOR})
    memo: dict[int, object] = {id(text_encoder): text_encoder}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if id(tensor) in shared or id(tensor) in memo:
            continue
        value = tensor.detach() * factors[id(tensor)] if id(tensor) in factors else tensor.detach().clone()
        if value.is_floating_point() and id(tensor) not in fp32:
            value = value.to(torch.bfloat16)
        memo[id(tensor)] = nn.Parameter(value, requires_grad=False) if isinstance(tensor, nn.Parameter) else value
    network = copy.deepcopy(model, memo).eval()
    for name in quick_gelu_blocks:
        network.get_submodule(name).mlp.gelu = nn.SiLU()
    return network.to(memory_format=torch.channels_last)
