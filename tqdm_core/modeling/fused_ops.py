"""Fused CPU inference kernels and their plain PyTorch equivalents (issue 14).

Inside `fast_kernels()` (the Predictor's eager network), for CPU tensors that need no gradient, a linear layer
runs as one oneDNN kernel that also applies its bias and either an activation (ReLU, GELU, SiLU) or a residual
addition to each output tile while it is still in cache: one pass over memory where the plain ops make two or
three (`F.linear` first copies the bias into the whole output, an activation or a residual sum then reads and
writes it again). oneDNN's GEMM on AMX is also what makes bf16 fast.

Everywhere else (training, a direct `model(images)`, CUDA, torch.compile and ONNX export, which fuse on their
own) the same functions run the plain ops in the order the model code used before they existed (F.linear, the
activation module, then the sum or product), bit for bit. tests/core/test_fast_paths.py pins the fused results to
the plain ones.

Also here: `feed_forward` (a transformer MLP, chunked over rows when fused), `attention` (unmasked attention as
two oneDNN GEMMs per head), `short_softmax` (softmax over a few elements, as streaming passes) and `at_least_fp32`.
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
HIDDEN_CHUNK_BYTES = 8 * 2 ** 20  # MLP hidden activations per chunk in `feed_forward` (see there)
SCORES_CHUNK_BYTES = 8 * 2 ** 20  # attention scores per chunk of query rows in `attention`
ATTENTION_RANGE = "tqdm::attention"  # profiler range around the fused `attention` (training/op_profile.py)
QUICK_GELU_FACTOR = 1.702  # open_clip's QuickGELU(x) = x * sigmoid(1.702 x) = SiLU(1.702 x) / 1.702


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
    return torch.backends.mkldnn.enabled and x.dtype in onednn_dtypes()


def linear(x: torch.Tensor, layer: nn.Linear, *, activation: nn.Module | None = None,
           residual: torch.Tensor | None = None, product: torch.Tensor | None = None) -> torch.Tensor:
    """`residual + activation(layer(x))` or `layer(x) * product`; one oneDNN kernel where `fused(x)`.

    At most one of `activation`, `residual` and `product` may be given (oneDNN fuses one post-operation here).
    An activation oneDNN cannot apply (e.g. open_clip's QuickGELU) runs as its own module after the fused linear.

    Args:
        x: (..., C_in).
        layer: the linear layer (its weight and bias are used in their own dtype, which must be x's).
        activation: an nn.ReLU, nn.GELU, nn.SiLU or any other module applied to the output.
        residual: (..., C_out), added to the output.
        product: (..., C_out), multiplying the output (a gated linear unit's gate).

    Returns:
        (..., C_out).
    """
    return linear_weights(x, layer.weight, layer.bias, activation=activation, residual=residual, product=product)


def linear_weights(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *,
                   activation: nn.Module | None = None, residual: torch.Tensor | None = None,
                   product: torch.Tensor | None = None) -> torch.Tensor:
    """`linear` with an explicit (C_out, C_in) weight and (C_out,) bias, e.g. slices of a packed projection."""
    if sum(term is not None for term in (activation, residual, product)) > 1:
        raise ValueError("linear fuses one of an activation, a residual sum and a product, not several; apply "
                         "the others yourself")
    if not fused(x):
        out = F.linear(x, weight, bias)
        if activation is not None:
            out = activation(out)
        if product is not None:
            out = product * out
        return out if residual is None else residual + out
    if residual is not None or product is not None:
        other, operation = (residual, "add") if residual is not None else (product, "mul")
        return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, bias, operation)
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
def onednn_dtypes() -> tuple[torch.dtype, ...]:
    """Dtypes oneDNN computes in this PyTorch build on this CPU (none without oneDNN; bf16 needs AVX-512)."""
    if not torch.backends.mkldnn.is_available():
        return ()
    return (torch.float32,) + ((torch.bfloat16,) if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ())


def feed_forward(x: torch.Tensor, first: nn.Linear, activation: nn.Module, second: nn.Linear, *,
                 residual: torch.Tensor | None = None) -> torch.Tensor:
    """`residual + second(activation(first(x)))`: a transformer MLP as two fused kernels where `fused(x)`.

    Where fused, the rows go through in chunks whose hidden activations stay under `HIDDEN_CHUNK_BYTES`: the
    pixel decoder's (5376 tokens x 2048) fp32 hidden layer is 42 MB per window, above glibc's largest mmap
    threshold (32 MB), so it would be freshly mapped, page-faulted and returned to the system on every call.

    Args:
        x: (..., C); residual: optional (..., C).

    Returns:
        (..., C).
    """
    if not fused(x):
        return linear(linear(x, first, activation=activation), second, residual=residual)
    rows = x.reshape(-1, x.shape[-1])
    residual_rows = None if residual is None else residual.reshape(-1, residual.shape[-1])
    chunk = max(1, HIDDEN_CHUNK_BYTES // (first.out_features * x.element_size()))
    outputs = [_fused_feed_forward(rows[start:start + chunk], first, activation, second,
                                   None if residual_rows is None else residual_rows[start:start + chunk])
               for start in range(0, rows.shape[0], chunk)]
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    return out.view(*x.shape[:-1], -1)


@functools.cache
def _quick_gelu_type() -> type:
    """open_clip's QuickGELU class, imported on first use: importing this module must not load open_clip (the
    node's parameter checks import the Predictor, which imports this module)."""
    from open_clip.transformer import QuickGELU

    return QuickGELU


def _fused_feed_forward(x: torch.Tensor, first: nn.Linear, activation: nn.Module, second: nn.Linear,
                        residual: torch.Tensor | None) -> torch.Tensor:
    """`feed_forward` on (rows, C) with the fused kernels.

    open_clip's QuickGELU, x * sigmoid(1.702 x) = SiLU(1.702 x) / 1.702, has no oneDNN form but SiLU has: the
    1.702 scales the input and bias of the first GEMM (which then applies SiLU) and 1 / 1.702 is the second
    GEMM's alpha, instead of three passes over the hidden activations (`bf16_network` folds it into the weights).
    """
    if not isinstance(activation, _quick_gelu_type()):
        return linear(linear(x, first, activation=activation), second, residual=residual)
    factor = QUICK_GELU_FACTOR
    bias = None if first.bias is None else first.bias * factor
    hidden = torch.ops.mkldnn._linear_pointwise(x * factor, first.weight, bias, "swish", [], "")  # 1.702 QuickGELU
    # second(hidden / 1.702) + residual = (W2 hidden + 1.702 (b2 + residual)) / 1.702: the 1.702 is applied to the
    # C-wide terms, not to the 4C-wide hidden layer, and the GEMM stays oneDNN's (on AMD CPUs twice the fp32 speed
    # of the MKL GEMM behind torch.addmm).
    bias = None if second.bias is None else second.bias * factor
    if residual is None:
        out = torch.ops.mkldnn._linear_pointwise(hidden, second.weight, bias, "none", [], "")
    else:
        out = torch.ops.mkldnn._linear_pointwise.binary(hidden, residual * factor, second.weight, bias, "add")
    return out.div_(factor)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked `F.scaled_dot_product_attention(q, k, v)` (scale 1 / sqrt(depth)); where `fused(q)`, per batch
    element and head as two oneDNN GEMMs with the softmax between them.

    PyTorch's CPU flash-attention kernel reached 150-185 GFLOP/s in fp32 and about 175 in bf16 on a 2-core AMD
    EPYC at the ViT-B/16 and EVA02-L window shapes; these GEMMs 250-270 in fp32 and 210-290 in bf16. The scores
    and their softmax are fp32 in both precisions (score rows in chunks of up to `SCORES_CHUNK_BYTES`, so they
    stay in cache and large inputs stay bounded): bf16 scores would be 2x faster but off by up to 0.06 at the
    logits of 20-40 attention reaches (bf16 spacing there is 0.125), where the flash kernel keeps fp32 too.

    Only where `gemm_attention_pays()`: with oneDNN's AVX2 kernels the GEMMs lost to the flash kernel (a ViT-B/16
    window 2.02 s against 1.93 s in fp32), with AVX-512 they won (1.04 against 1.11 s fp32, 0.60 against 0.70 s
    bf16; 2 threads, the AMD EPYC).

    Args:
        q: (B, heads, Nq, D); k: (B, heads, Nk, D); v: (B, heads, Nk, Dv).

    Returns:
        (B, heads, Nq, Dv) in v's dtype; the fused result is a transposed view of a (B, Nq, heads, Dv) tensor, so
        that `.transpose(1, 2).reshape(B, Nq, heads * Dv)` is free.
    """
    if not (fused(q) and gemm_attention_pays() and k.dtype == q.dtype and v.dtype == q.dtype):
        return F.scaled_dot_product_attention(q, k, v)
    with torch.profiler.record_function(ATTENTION_RANGE):
        batch, heads, length, depth = q.shape
        keys = k.shape[2]
        q, k = at_least_fp32(q) * depth ** -0.5, at_least_fp32(k)  # fp32 scores (see above)
        out = v.new_empty(batch, length, heads, v.shape[3])
        rows = max(1, SCORES_CHUNK_BYTES // (keys * q.element_size()))
        gemm = torch.ops.mkldnn._linear_pointwise  # (x, weight, bias, ...) -> x @ weight^T
        for b in range(batch):
            for h in range(heads):
                key = k[b, h].contiguous()  # oneDNN's weight operand: (Nk, D) gives query @ key^T
                value_t = v[b, h].t().contiguous()  # (Dv, Nk) gives probabilities @ value
                for start in range(0, length, rows):
                    scores = gemm(q[b, h, start:start + rows], key, None, "none", [], "")
                    out[b, start:start + rows, h] = gemm(scores.softmax(-1).to(v.dtype), value_t, None, "none", [], "")
        return out.transpose(1, 2)


@functools.cache
def gemm_attention_pays() -> bool:
    """True where PyTorch's CPU kernels run at AVX-512 or above (`attention` is faster there, slower on AVX2)."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def short_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over a short last dimension (the 12 levels x points of a deformable-attention head, the 19
    classes a pixel attends to), as four streaming passes.

    Equal to `logits.softmax(-1)` up to rounding (1e-7); PyTorch's CPU softmax loops over each 12-element row on
    its own and is about 6x slower at this shape.

    Args:
        logits: (..., n).

    Returns:
        (..., n), non-negative, summing to 1 over the last dimension.
    """
    exponentials = (logits - logits.amax(dim=-1, keepdim=True)).exp()
    return exponentials / exponentials.sum(dim=-1, keepdim=True)


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` in fp32 if it is in a lower precision (bf16, fp16), else unchanged (fp32, fp64)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))
