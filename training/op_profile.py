"""Where the time of one Predictor call goes, per class of operator (`python -m training.bench --profile`).

One call runs under `torch.profiler` (CPU activity). Every operator event's self time (its own time, children
excluded; intra-op worker threads are inside it) is added to the class of its name; the wall time of the call
minus the sum of all self times is the Python and dispatch overhead between operators. Classes (issue 14):

- matmul: GEMMs (addmm, mm, bmm, linear, einsum, fused linear-pointwise);
- attention: fused scaled-dot-product attention kernels, and everything inside the Predictor's own attention
  (`fused_ops.attention`: its GEMMs, softmax and per-head copies, marked by a profiler range);
- conv: convolutions and transposed convolutions;
- deformable sampling: the bilinear gathers of multi-scale deformable attention (embedding_bag, grid_sample);
- norm: LayerNorm, GroupNorm, BatchNorm;
- copies: dtype casts, concatenation, padding, fills and other data movement;
- resize / pool: bilinear resizes and pooling;
- element-wise: everything else (arithmetic, activations, softmax, comparisons, small reductions).

"Outside kernels" is the share of the wall time not spent in matmul, attention or conv kernels.
"""
from __future__ import annotations

import time
from typing import Callable

from torch.profiler import ProfilerActivity, profile

from tqdm_core.modeling.fused_ops import ATTENTION_RANGE

KERNEL_CLASSES = ("matmul", "attention", "conv")
CLASSES = (*KERNEL_CLASSES, "deformable sampling", "norm", "copies", "resize / pool", "element-wise")
OP_CLASSES = {
    "matmul": ("addmm", "mm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "einsum", "_addmm_activation",
               "_linear_pointwise", "_mkl_linear", "mkldnn_linear"),
    "attention": ("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
                  "_scaled_dot_product_attention_math", "_scaled_dot_product_fused_attention_overrideable",
                  "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention"),
    "conv": ("conv1d", "conv2d", "convolution", "_convolution", "mkldnn_convolution", "conv_transpose2d",
             "_convolution_pointwise", "slow_conv_transpose2d", "_slow_conv2d_forward"),
    "deformable sampling": ("embedding_bag", "_embedding_bag", "_embedding_bag_forward_only", "grid_sampler",
                            "grid_sampler_2d"),
    "norm": ("layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "batch_norm",
             "_batch_norm_impl_index", "native_batch_norm", "_native_batch_norm_legit_no_training",
             "_native_batch_norm_legit"),
    "copies": ("copy_", "_to_copy", "to", "cat", "stack", "clone", "contiguous", "constant_pad_nd", "pad", "fill_",
               "zero_", "zeros", "zeros_like", "index", "index_select", "repeat", "flip", "narrow_copy",
               "_unsafe_view", "reshape", "expand_as"),
    "resize / pool": ("upsample_bilinear2d", "_upsample_bilinear2d_aa", "upsample_bicubic2d", "max_pool2d",
                      "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d"),
}
_CLASS_OF = {op: name for name, ops in OP_CLASSES.items() for op in ops}


def op_class(event_name: str) -> str:
    """The class of a profiler event: "aten::addmm" -> "matmul"; unknown operators are "element-wise"."""
    if event_name == ATTENTION_RANGE:
        return "attention"
    return _CLASS_OF.get(event_name.rpartition("::")[2], "element-wise")


def _event_class(event) -> str:
    """`op_class` of the event, or "attention" for anything inside the fused attention's range."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == ATTENTION_RANGE:
            return "attention"
        parent = parent.cpu_parent
    return op_class(event.name)


def profile_call(call: Callable[[], object], *, top: int = 12) -> dict:
    """Run `call` once under the profiler and break its wall time down by operator class.

    Returns:
        {"wall_s": float, "classes_s": {class: seconds} over `CLASSES` plus "python / dispatch",
        "outside_kernels": fraction of the wall time outside matmul/attention/conv, "top_ops": the `top` operators
        by self time as [name, seconds, calls]}.
    """
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        call()
        wall = time.perf_counter() - start
    seconds = dict.fromkeys(CLASSES, 0.0)
    for event in profiler.events():
        seconds[_event_class(event)] += event.self_cpu_time_total / 1e6
    ops = [[event.key, event.self_cpu_time_total / 1e6, event.count] for event in profiler.key_averages()]
    seconds["python / dispatch"] = max(wall - sum(seconds.values()), 0.0)
    kernels = sum(seconds[name] for name in KERNEL_CLASSES)
    ops.sort(key=lambda op: -op[1])
    return {"wall_s": wall, "classes_s": seconds, "outside_kernels": 1.0 - kernels / wall, "top_ops": ops[:top]}


def markdown_table(rows: list[dict]) -> str:
    """One line per profiled configuration: % of the wall time per class, and the share outside the kernels."""
    columns = (*CLASSES, "python / dispatch")
    lines = ["| preset | input | precision | runtime | wall (s) | " + " | ".join(columns) + " | outside kernels |",
             "|---|---|---|---|---:|" + "---:|" * (len(columns) + 1)]
    for row in rows:
        if "profile" not in row:
            continue
        profiled = row["profile"]
        shares = " | ".join(f"{100 * profiled['classes_s'][name] / profiled['wall_s']:.1f}" for name in columns)
        lines.append(f"| {row['preset']} | {row['height']}x{row['width']} | {row['precision']} | {row['runtime']} | "
                     f"{profiled['wall_s']:.3f} | {shares} | **{100 * profiled['outside_kernels']:.0f}%** |")
    return "\n".join(lines)
