"""Fused CPU inference kernels and their plain PyTorch equivalents (issue 14).

Inside `fast_kernels()` (the Predictor's eager network), for CPU tensors that need no gradient, a linear layer
runs as one oneDNN kernel that also applies its bias and either an activation (ReLU, GELU, SiLU) or a residual
addition to each output tile while it is still in cache: one pass over memory where the plain ops make two or
three (`F.linear` first copies the bias into the whole output, an activation or a residual sum then reads and
writes it again). oneDNN's GEMM on AMX is also what makes bf16 fast.

Everywhere else (training, a direct `model(images)`, CUDA, torch.compile and ONNX export, which fuse on their
own) the same functions run the plain ops in the order the model code always used, so those outputs are
unchanged bit for bit. tests/core/test_fast_paths.py pins the fused results to the plain ones.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_FAST_KERNELS = contextvars.ContextVar("tqdm_fast_kernels", default=False)


@contextlib.contextmanager
def fast_kernels(enabled: bool = True) -> Iterator[None]:
    """Run the fused kernels (where they apply) inside this block; `enabled=False` forces the plain ops."""
    token = _FAST_KERNELS.set(enabled)
    try:
        yield
    finally:
        _FAST_KERNELS.reset(token)


def fused(x: torch.Tensor) -> bool:
    """True if the fused kernels run for `x` here: inside `fast_kernels()`, on the CPU, without autograd, in a
    dtype oneDNN computes natively (fp32; bf16 on CPUs with AVX-512 or newer), outside compile and export."""
    if torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():  # checked first: tracers skip the rest
        return False
    if not _FAST_KERNELS.get() or x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad):
        return False
    return torch.backends.mkldnn.enabled and x.dtype in _onednn_dtypes()


def linear(x: torch.Tensor, layer: nn.Linear, *, activation: nn.Module | None = None,
           residual: torch.Tensor | None = None) -> torch.Tensor:
    """`residual + activation(layer(x))`, either term optional; fused into one oneDNN kernel where `fused(x)`.

    Only one of `activation` and `residual` may be given (oneDNN fuses one post-operation here). An activation
    oneDNN cannot apply (e.g. open_clip's QuickGELU) runs as its own module after the fused linear.

    Args:
        x: (..., C_in).
        layer: the linear layer (its weight and bias are used in their own dtype, which must be x's).
        activation: an nn.ReLU, nn.GELU, nn.SiLU or any other module applied to the output.
        residual: (..., C_out), added to the output.

    Returns:
        (..., C_out).
    """
    return linear_weights(x, layer.weight, layer.bias, activation=activation, residual=residual)


def linear_weights(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *,
                   activation: nn.Module | None = None, residual: torch.Tensor | None = None) -> torch.Tensor:
    """`linear` with an explicit (C_out, C_in) weight and (C_out,) bias, e.g. slices of a packed projection."""
    if activation is not None and residual is not None:
        raise ValueError("linear fuses an activation or a residual addition, not both; apply one of them yourself")
    if not fused(x):
        out = F.linear(x, weight, bias)
        if activation is not None:
            out = activation(out)
        return out if residual is None else residual + out
    if residual is not None:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    attribute, algorithm = _onednn_activation(activation)
    out = torch.ops.mkldnn._linear_pointwise(x, weight, bias, attribute, [], algorithm)
    if activation is not None and attribute == "none":  # not fusable: apply it as its own operation
        out = activation(out)
    return out


def _onednn_activation(activation: nn.Module | None) -> tuple[str, str]:
    """oneDNN post-operation name and algorithm of an activation module; ("none", "") if oneDNN has none."""
    if isinstance(activation, nn.ReLU):
        return "relu", ""
    if isinstance(activation, nn.SiLU):
        return "swish", ""
    if isinstance(activation, nn.GELU):
        return "gelu", activation.approximate
    return "none", ""


@functools.cache
def _onednn_dtypes() -> tuple[torch.dtype, ...]:
    """Dtypes oneDNN computes in this PyTorch build on this CPU (none without oneDNN; bf16 needs AVX-512)."""
    if not torch.backends.mkldnn.is_available():
        return ()
    return (torch.float32,) + ((torch.bfloat16,) if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ())


def feed_forward(x: torch.Tensor, first: nn.Linear, activation: nn.Module, second: nn.Linear, *,
                 residual: torch.Tensor | None = None) -> torch.Tensor:
    """`residual + second(activation(first(x)))`: a transformer MLP as two fused kernels where `fused(x)`.

    Args:
        x: (..., C); residual: optional (..., C).

    Returns:
        (..., C).
    """
    return linear(linear(x, first, activation=activation), second, residual=residual)
