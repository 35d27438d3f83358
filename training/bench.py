"""Inference benchmark: latency, model GFLOPs, achieved GFLOP/s and the fraction of this machine's matmul peak.

    python -m training.bench                      # every preset, 512x512 (whole) and 512x1024 (slide), fp32 + bf16
    python -m training.bench --quick              # tiny presets, 2 repeats: checks the tooling in a few minutes
    python -m training.bench --presets tqdm-clip-vit-b16 --precisions fp32 --runtimes torch,onnxruntime,compile

What is measured (issue 8):
- Latency: the Predictor end to end (uint8 image in, labels/confidence out: normalisation, padding, windows,
  network, semantic inference, resize back), median over `--repeats` timed calls after `--warmup` untimed calls
  (default 2: the first calls export or compile where the runtime needs it, and with reuse_memory a call stops
  page-faulting only after the second). 512x512 runs whole (one window); 512x1024 runs the paper's sliding window
  (512 window, stride 341: 3 windows in one batch). The frame-rate table runs --fps-size whole.
- GFLOPs: `torch.utils.flop_counter.FlopCounterMode` over the graph the configuration runs. Eager rows: one extra
  untimed `Predictor.predict` call before the warm-up, so the count covers the network the Predictor runs (its
  fused oneDNN linears, the few-key text attention with the projections folded onto the class side, its
  precision) on the batches it feeds it. torch.compile and ONNX Runtime rows run the plain inference graph
  (that is what is compiled and exported, and their kernels are not torch operators to count): it is counted
  after the timed calls, on the fp32 model. 2 FLOPs per multiply-accumulate of matmul/linear (mm, addmm, bmm,
  baddbmm, oneDNN's fused linear), convolution and transposed convolution, and scaled-dot-product attention (QK^T
  and PV; the CPU flash kernel and oneDNN's linear are registered below because torch does not count them).
  Element-wise ops, norms, softmax, grid_sample / embedding_bag (the deformable sampling) and resizes are NOT
  counted: they are memory-bound and small in FLOPs. Each row says which graph in `flops_counted_on`. (Result
  files without that field counted the plain graph for every row: for the eager rows of the large presets, whose
  Predictor folds the pixel-to-class-text attention, that is 4.0 GFLOPs per 512x512 window more than they run,
  1.1 % of ViT-B/16's count and 2.2 % of RN50's, and their GFLOP/s and % of peak are too high by as much.)
- Peak: the best rate of a large square product in fp32 and in bf16 at the same thread count, measured in this run
  (sizes grow until one product takes over a second). "% peak" = achieved GFLOP/s / that peak of the
  configuration's precision (fp32 peak for ONNX Runtime). On a CPU without native bf16 (no AVX512-BF16, AMX or Arm
  BF16) the bf16 "peak" is an emulated matmul that the model's own bf16 kernels outrun, so bf16 % of peak is n/a
  there (null in the JSON, with `peak_fraction_reason`), and bf16 is only measured when --precisions asks for it.
- Peak RSS: every configuration runs in its own subprocess; `peak_rss_mb` is its `ru_maxrss` read right after the
  timed calls: the Predictor (model, runtime), the FLOP-counting call of eager rows (the same network, precision
  and batches as the timed calls), the warm-up and the timed calls. The plain-graph FLOP count of compile / ONNX
  Runtime rows and the --profile call come after the reading. `peak_rss_after_build_mb` is the same reading right
  after the Predictor was built.
- With --profile, one more call per configuration runs under torch.profiler and its wall time is broken down by
  operator class (matmul, attention, conv, deformable sampling, norm, copies, resize / pool, element-wise,
  Python / dispatch; see training/op_profile.py), with the share outside matmul/attention/conv kernels.
- The machine: CPU model, the flags that decide matmul speed (AVX2, AVX-512, AVX512-BF16, AMX, ...), PyTorch's
  dispatch level, the dtypes oneDNN computes, the environment variables that change which kernels run or how
  threads wait (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, OMP_*, KMP_*, LD_PRELOAD), the
  command line, the git commit of this checkout and the load average before every configuration are recorded,
  since other processes may share the CPU.

Results print as a markdown table (for the README) and are saved as JSON (--output).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from tqdm_core.inference.precision import cpu_has_native_bf16
from tqdm_core.modeling import fused_ops
from training import op_profile

PRESETS = ("tqdm-tiny-rn", "tqdm-tiny-vit", "tqdm-clip-rn50", "tqdm-clip-vit-b16", "tqdm-eva02-l14")
SMALL_PRESETS = ("tqdm-tiny-rn", "tqdm-tiny-vit")
DEFAULT_MODEL = "default-model"  # the checkpoint shipped in the package, at its recommended input scale
FPS_PRESETS = (DEFAULT_MODEL, "tqdm-small-rn", "tqdm-tiny-rn", "tqdm-tiny-vit", "tqdm-clip-rn50")
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
RUNTIMES = ("torch", "compile", "onnxruntime")
WINDOW, STRIDE = 512, 341  # the paper's sliding window (METHOD.md section 8)
REPO_ROOT = Path(__file__).resolve().parents[1]
# Variables that change which CPU kernels PyTorch, oneDNN, MKL and OpenMP run, or how their threads wait; recorded
# (None when unset) with every variable starting with one of KERNEL_ENVIRONMENT_PREFIXES.
KERNEL_ENVIRONMENT = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                      "MKL_DEBUG_CPU_TYPE", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "LD_PRELOAD")
KERNEL_ENVIRONMENT_PREFIXES = ("KMP_", "OMP_", "ONEDNN_", "DNNL_")
NO_NATIVE_BF16 = ("this CPU has no native bf16 (AVX512-BF16, AMX or Arm BF16): its bf16 matmul is emulated, and the "
                  "model's own bf16 kernels outrun it, so it is no peak")
FLOPS_COUNTED_ON = {
    "torch": "the Predictor's call (its eager network: fused oneDNN linears; few-key text attention folded where the "
             "model has it)",
    "compile": "the plain inference graph (what torch.compile traces), fp32 model",
    "onnxruntime": "the plain inference graph (what the ONNX export exports), fp32 model",
}


@dataclass
class BenchConfig:
    """One measured configuration, run in its own subprocess."""

    preset: str
    height: int
    width: int
    precision: str  # "fp32" or "bf16"
    runtime: str  # "torch" (eager), "compile" (torch.compile) or "onnxruntime"
    table: str  # "latency" (512 sizes) or "fps" (--fps-size)
    threads: int
    repeats: int
    warmup: int  # untimed calls before the timed ones (after the FLOP-counting call of eager rows)
    budget_s: float  # stop timing after this many seconds (at least one timed call)
    scale: float | None = None  # the Predictor's input scale; None: the checkpoint's recommendation (1 untrained)
    profile: bool = False  # also break one call down by operator class (training.op_profile)
    reuse_memory: bool = True  # the Predictor's reuse_memory (glibc keeps freed memory; off: every call page-faults)

    @property
    def mode(self) -> str:
        return "whole" if self.height <= WINDOW and self.width <= WINDOW else "slide"


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of aten._scaled_dot_product_flash_attention_for_cpu: QK^T and PV, 2 per multiply-accumulate."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _onednn_linear_flops(input_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of mkldnn._linear_pointwise (and its .binary overload): (..., C_in) -> (..., C_out), 2 per
    multiply-accumulate; the fused bias, activation or residual are element-wise and not counted."""
    return 2 * math.prod(out_shape) * input_shape[-1]


FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops,
                 torch.ops.mkldnn._linear_pointwise: _onednn_linear_flops}


def network_batches(model: torch.nn.Module, config: BenchConfig, scale: float) -> list[tuple[int, int, int, int]]:
    """Input shapes of the network calls the Predictor makes for one image of this configuration at ``scale``."""
    if config.mode == "whole":
        divisor = model.size_divisor
        height, width = (max(1, round(side * scale)) for side in (config.height, config.width))
        return [(1, 3, math.ceil(height / divisor) * divisor, math.ceil(width / divisor) * divisor)]
    from tqdm_core.inference.sliding_window import window_starts

    height, width = max(config.height, WINDOW), max(config.width, WINDOW)
    windows = len(window_starts(height, WINDOW, STRIDE)) * len(window_starts(width, WINDOW, STRIDE))
    return [(windows, 3, WINDOW, WINDOW)]  # one batch: the Predictor's max_batch_size (8) exceeds 3 windows


class _WholeCallOnly:
    """Stands in for FlopCounterMode's per-module tracker (`mod_tracker`), so that every FLOP goes to "Global" only.

    The tracker hooks autograd on module inputs that require gradients; inside the Predictor's inference mode a
    parameter passed into a module (e.g. a position embedding) has no autograd node and the hook fails.
    """

    parents = ("Global",)

    def __enter__(self) -> "_WholeCallOnly":
        return self

    def __exit__(self, *exc_info) -> None:
        return None


def count_flops(call: Callable[[], object]) -> int:
    """FLOPs of the torch operators one run of `call` dispatches (see the module docstring for what counts)."""
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
    counter.mod_tracker = _WholeCallOnly()
    with torch.no_grad(), counter:
        call()
    return counter.get_total_flops()


def count_plain_graph_flops(model: torch.nn.Module, shapes: list[tuple[int, int, int, int]]) -> int:
    """FLOPs of the plain inference graph (segmenter + semantic inference, no fused kernels: what torch.compile
    traces and the ONNX export exports) on zero images of the given shapes."""
    from tqdm_core.inference.export import InferenceGraph

    graph = InferenceGraph(model=model)
    return count_flops(lambda: [graph(torch.zeros(shape)) for shape in shapes])


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (ru_maxrss, KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_config(config: BenchConfig) -> dict:
    """Build the Predictor, count FLOPs, time the Predictor; runs inside the worker subprocess.

    Eager rows count FLOPs on one untimed Predictor call before the warm-up (the graph and precision the timed
    calls run, so the peak RSS read after the timed calls includes nothing they do not need); compile and ONNX
    Runtime rows count the plain graph after the peak RSS is read.
    """
    from tqdm_core import InferenceOptions, load_predictor
    from tqdm_core.default_model import DEFAULT

    torch.set_num_threads(config.threads)
    options = InferenceOptions(precision=config.precision, mode=config.mode, window=WINDOW, stride=STRIDE,
                               scale=config.scale, compile=config.runtime == "compile",
                               runtime="onnxruntime" if config.runtime == "onnxruntime" else "torch",
                               reuse_memory=config.reuse_memory)
    if config.preset == DEFAULT_MODEL:
        predictor = load_predictor(DEFAULT, options=options)
    else:  # random weights: the latency and FLOPs do not depend on them
        predictor = load_predictor(None, preset=config.preset, options=options)
    rss_after_build = peak_rss_mb()
    image = np.random.default_rng(0).integers(0, 256, (config.height, config.width, 3), dtype=np.uint8)
    flops, flop_count_s = None, None
    if config.runtime == "torch":
        start = time.perf_counter()
        flops = count_flops(lambda: predictor.predict(image))
        flop_count_s = time.perf_counter() - start
    warmup_s = []
    for _ in range(config.warmup):
        start = time.perf_counter()
        predictor.predict(image)
        warmup_s.append(time.perf_counter() - start)
    latencies = []
    deadline = time.perf_counter() + config.budget_s
    while len(latencies) < config.repeats and (not latencies or time.perf_counter() < deadline):
        start = time.perf_counter()
        predictor.predict(image)
        latencies.append(time.perf_counter() - start)
    rss = peak_rss_mb()
    if flops is None:
        flops = count_plain_graph_flops(predictor.model, network_batches(predictor.model, config, predictor.scale))
    result = {"flops": flops, "flops_counted_on": FLOPS_COUNTED_ON[config.runtime], "flop_count_call_s": flop_count_s,
              "scale": predictor.scale, "latencies_s": latencies, "warmup_s": warmup_s, "peak_rss_mb": rss,
              "peak_rss_after_build_mb": rss_after_build}
    if config.profile:
        result["profile"] = op_profile.profile_call(lambda: predictor.predict(image), top=30)
    return result


def run_in_subprocess(config: BenchConfig, timeout_s: float) -> dict:
    """Run one configuration in a fresh interpreter (own peak RSS, no state shared between configurations)."""
    command = [sys.executable, "-m", "training.bench", "--worker", json.dumps(dataclasses.asdict(config))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s (raise --timeout or lower --repeats/--budget)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"worker failed (exit {done.returncode}): {tail[:300]}"}
    return json.loads(lines[-1])


def matmul_peak(dtype: torch.dtype, *, max_size: int, seconds_per_product: float = 1.0) -> dict:
    """Best GFLOP/s of a square matrix product over sizes 512, 1024, ... up to `max_size`, by the faster of the
    two GEMM libraries PyTorch has on the CPU: `torch.matmul` (MKL for fp32) and oneDNN's linear kernel (what the
    Predictor's fused linears run). On AMD CPUs MKL's fp32 GEMM reaches about half of oneDNN's, so a peak from
    `torch.matmul` alone would put the model above 100 %.

    Sizes grow until one product takes longer than `seconds_per_product` (bf16 without native support is two
    orders of magnitude slower than fp32, so its sweep stops early). Each size: one warm-up, median of 3.
    """
    products = {"torch.matmul": lambda a, b: torch.matmul(a, b)}
    if dtype in fused_ops.onednn_dtypes():
        products["oneDNN linear"] = lambda a, b: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    best = {"gflops": 0.0, "size": 0, "library": ""}
    size = 512
    while size <= max_size:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator).to(dtype)
        b = torch.randn(size, size, generator=generator).to(dtype)
        slowest = 0.0
        for library, product in products.items():
            product(a, b)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                product(a, b)
                times.append(time.perf_counter() - start)
            elapsed = statistics.median(times)
            slowest = max(slowest, elapsed)
            gflops = 2 * size ** 3 / elapsed / 1e9
            if gflops > best["gflops"]:
                best = {"gflops": gflops, "size": size, "library": library}
        if slowest > seconds_per_product:
            break
        size *= 2
    return best


def measure_peaks(precisions: list[str], *, max_size: int) -> dict[str, dict]:
    """`matmul_peak` of each precision, with "native": False for bf16 on a CPU without native bf16 (there the rate
    is that of an emulated matmul, which is no peak)."""
    peaks = {}
    for name in precisions:
        native = name != "bf16" or cpu_has_native_bf16()
        peaks[name] = matmul_peak(PRECISION_DTYPES[name], max_size=max_size) | {"native": native}
    return peaks


def summarise(config: BenchConfig, result: dict, peaks: dict[str, dict]) -> dict:
    """Add median latency, fps, GFLOPs, GFLOP/s and % of the precision's matmul peak to a worker result.

    The fraction of the peak is None (n/a) where the precision's peak is not native (`measure_peaks`), and
    `peak_fraction_reason` says why.
    """
    row = dataclasses.asdict(config) | {"mode": config.mode} | result
    if "error" in result:
        return row
    median = statistics.median(result["latencies_s"])
    gflops = result["flops"] / 1e9
    peak = peaks[config.precision]
    row |= {"median_s": median, "fps": 1.0 / median, "gflops": gflops, "achieved_gflops_per_s": gflops / median,
            "peak_fraction": gflops / median / peak["gflops"] if peak["native"] else None}
    if not peak["native"]:
        row["peak_fraction_reason"] = NO_NATIVE_BF16
    return row


def percent_of_peak(row: dict) -> str:
    """"64%", or "n/a" where the row has no meaningful peak."""
    return "n/a" if row["peak_fraction"] is None else f"{100 * row['peak_fraction']:.0f}%"


def markdown_table(rows: list[dict], table: str) -> str:
    header = ("| preset | input | mode | precision | runtime | median latency (s) | fps | GFLOPs | GFLOP/s | % peak "
              "| peak RSS (MB) | timed runs |\n|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [header]
    for row in (r for r in rows if r["table"] == table):
        size = f"{row['width']}x{row['height']}" if table == "fps" else f"{row['height']}x{row['width']}"
        prefix = f"| {row['preset']} | {size} | {row['mode']} | {row['precision']} | {row['runtime']} |"
        if "error" in row:
            lines.append(f"{prefix} {row['error']} | | | | | | |")
            continue
        lines.append(f"{prefix} {row['median_s']:.3f} | {row['fps']:.2f} | {row['gflops']:.1f} | "
                     f"{row['achieved_gflops_per_s']:.1f} | {percent_of_peak(row)} | "
                     f"{row['peak_rss_mb']:.0f} | {len(row['latencies_s'])} |")
    return "\n".join(lines)


def build_configs(args: argparse.Namespace) -> list[BenchConfig]:
    common = dict(threads=args.threads, repeats=args.repeats, warmup=args.warmup, budget_s=args.budget,
                  profile=args.profile, reuse_memory=not args.no_reuse_memory)
    configs = []
    for table, presets, sizes in (("latency", args.presets, args.sizes), ("fps", args.fps_presets, [args.fps_size])):
        for preset in presets:
            for height, width in sizes:
                for precision in args.precisions:
                    for runtime in args.runtimes:
                        if runtime == "onnxruntime" and precision != "fp32":
                            continue  # ONNX Runtime runs the exported fp32 graph only
                        configs.append(BenchConfig(preset=preset, height=height, width=width, precision=precision,
                                                   runtime=runtime, table=table, **common))
    return configs


def parse_size(text: str) -> tuple[int, int]:
    """"HxW" -> (H, W) for --sizes; "WxH" is used for --fps-size (camera convention, 480x360)."""
    try:
        first, second = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 512x1024, got '{text}'") from None
    if first < 1 or second < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got '{text}'")
    return first, second


def comma_list(choices: tuple[str, ...] | None = None):
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {choices}, got '{text}'")
        return values
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from tqdm_core import list_presets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", type=comma_list(tuple(list_presets())), default=list(PRESETS),
                        help="presets of the 512x512 / 512x1024 table (default: all)")
    parser.add_argument("--sizes", type=lambda t: [parse_size(s) for s in t.split(",")],
                        default=[(512, 512), (512, 1024)], help="HxW list; at most 512 per side runs whole, "
                        "larger runs the 512/341 sliding window (default: 512x512,512x1024)")
    parser.add_argument("--precisions", type=comma_list(tuple(PRECISION_DTYPES)),
                        help="default: fp32,bf16 on a CPU with native bf16 (AVX512-BF16, AMX, Arm BF16), else fp32 "
                        "(bf16 is emulated there, up to 100x slower; ask for bf16 to measure it anyway)")
    parser.add_argument("--runtimes", type=comma_list(RUNTIMES), default=["torch", "onnxruntime"],
                        help="torch (eager), compile (torch.compile, long first call), onnxruntime (fp32)")
    parser.add_argument("--fps-presets", type=comma_list((DEFAULT_MODEL, *list_presets())),
                        default=list(FPS_PRESETS), help=f"presets of the frame-rate table ('{DEFAULT_MODEL}': the "
                        "shipped checkpoint at its recommended input scale)")
    parser.add_argument("--no-fps", action="store_true", help="skip the frame-rate table")
    parser.add_argument("--no-latency", action="store_true", help="skip the 512x512 / 512x1024 table")
    parser.add_argument("--fps-size", type=parse_size, default=(480, 360), help="WxH of the frame-rate table")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before the timed ones (export/compile "
                        "happen here; with reuse_memory a call stops page-faulting after the second)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds of timed calls per configuration before stopping early (>= 1 call)")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="torch/ONNX Runtime threads (default: the CPUs this process may run on)")
    parser.add_argument("--timeout", type=float, default=3 * 3600.0, help="seconds before a configuration is "
                        "abandoned (bf16 on CPUs without native bf16 is very slow)")
    parser.add_argument("--output", type=Path, default=Path("bench_results.json"), help="JSON results file")
    parser.add_argument("--quick", action="store_true",
                        help="tiny presets only, 2 repeats, fp32 peak sweep up to 1024: checks the tooling")
    parser.add_argument("--profile", action="store_true", help="also profile one call per configuration and print "
                        "the time per operator class (matmul, attention, conv, deformable sampling, norm, copies, "
                        "resize / pool, element-wise, Python / dispatch)")
    parser.add_argument("--no-reuse-memory", action="store_true", help="build the Predictors with reuse_memory "
                        "off (glibc maps and faults in fresh pages for every large tensor of every call)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    native_bf16 = cpu_has_native_bf16()
    args.bf16_skipped = args.precisions is None and not native_bf16
    if args.precisions is None:
        args.precisions = ["fp32", "bf16"] if native_bf16 else ["fp32"]
    elif "bf16" in args.precisions and not native_bf16 and not args.worker:
        print("warning: bf16 on this CPU (no AVX512-BF16, AMX or Arm BF16) is emulated and much slower than fp32 "
              "(up to 100x; raise --timeout for the large presets); measured because --precisions asks for it, "
              "its % of peak is n/a", file=sys.stderr, flush=True)
    args.fps_size = (args.fps_size[1], args.fps_size[0])  # WxH -> (H, W)
    if args.no_fps:
        args.fps_presets = []
    if args.no_latency:
        args.presets = []
    if args.no_fps and args.no_latency:
        parser.error("--no-fps and --no-latency together leave nothing to measure")
    if args.quick:
        if not args.no_latency:
            args.presets = [p for p in args.presets if p in SMALL_PRESETS] or list(SMALL_PRESETS)
        if not args.no_fps:
            args.fps_presets = [p for p in args.fps_presets if p in SMALL_PRESETS] or list(SMALL_PRESETS)
        args.repeats = min(args.repeats, 2)
        args.budget = min(args.budget, 30.0)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error(f"need --repeats >= 1, --warmup >= 0 and --threads >= 1, got {args.repeats}, {args.warmup}, "
                     f"{args.threads}")
    if "compile" in args.runtimes:
        args.warmup = max(args.warmup, 2)  # the first compiled call compiles; the second may still recompile
    return args


def default_threads() -> int:
    """The CPUs this process may run on (its affinity mask, which cpusets also narrow), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def kernel_environment() -> dict[str, str | None]:
    """The `KERNEL_ENVIRONMENT` variables (None when unset) and every set variable with a
    `KERNEL_ENVIRONMENT_PREFIXES` prefix."""
    prefixed = (name for name in os.environ if name.startswith(KERNEL_ENVIRONMENT_PREFIXES))
    names = sorted({*KERNEL_ENVIRONMENT, *prefixed})
    return {name: os.environ.get(name) for name in names}


def git_commit() -> dict[str, str | bool | None]:
    """The commit of this checkout and whether tracked files differ from it; None for both outside a git checkout
    (an installed package) or without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=30, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                 capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "uncommitted_changes": None}
    return {"commit": commit, "uncommitted_changes": bool(changes)}


def machine_info(threads: int) -> dict:
    """The machine and software a result depends on, for the results file: CPU model, matmul-relevant flags,
    PyTorch's dispatch level, the dtypes oneDNN computes, the kernel-selecting environment, threads, load, the
    command line and the git commit."""
    from tqdm_core.inference.precision import cpu_info

    cpu = cpu_info()
    return {"cpu": cpu.model, "cpu_flags": list(cpu.flags), "cpu_capability": cpu.capability,
            "native_bf16": cpu_has_native_bf16(), "onednn_dtypes": [str(d).removeprefix("torch.")
                                                                    for d in fused_ops.onednn_dtypes()],
            "threads": threads, "affinity_cpus": default_threads(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "environment": kernel_environment(), "command": [sys.executable, *sys.argv],
            "git": git_commit(), "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_config(BenchConfig(**json.loads(args.worker)))), flush=True)
        return
    load_at_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    max_size = 1024 if args.quick else 4096
    if args.bf16_skipped:
        print("bf16 not measured: this CPU has no native bf16 (AVX512-BF16, AMX or Arm BF16), so bf16 is emulated "
              "there and far slower than fp32; --precisions fp32,bf16 measures it anyway", flush=True)
    print(f"measuring matmul peaks with {args.threads} threads ...", flush=True)
    peaks = measure_peaks(args.precisions, max_size=max_size)
    for name, peak in peaks.items():
        kind = "peak" if peak["native"] else "rate (emulated, no peak: its % of peak is n/a)"
        print(f"  {name} matmul {kind}: {peak['gflops']:.1f} GFLOP/s ({peak['library']}, square {peak['size']})",
              flush=True)
    configs = build_configs(args)
    rows = []
    for index, config in enumerate(configs, 1):
        label = f"{config.preset} {config.height}x{config.width} {config.mode} {config.precision} {config.runtime}"
        print(f"[{index}/{len(configs)}] {label} ...", flush=True)
        load = os.getloadavg()[0]  # other processes share the CPU: record how busy it was
        row = summarise(config, run_in_subprocess(config, args.timeout), peaks) | {"load_average_before": load}
        rows.append(row)
        if "error" in row:
            print(f"    {row['error']}", flush=True)
        else:
            print(f"    median {row['median_s']:.3f} s, {row['gflops']:.1f} GFLOPs, {row['achieved_gflops_per_s']:.1f} "
                  f"GFLOP/s = {percent_of_peak(row)} of the {config.precision} peak"
                  f"{'' if row['peak_fraction'] is not None else ' (the CPU has no native bf16)'}, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    machine = machine_info(args.threads) | {"load_average_start": load_at_start}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine, "matmul_peaks": peaks, "results": rows}, indent=2))
    peak_line = ", ".join(f"{name} {p['gflops']:.1f} GFLOP/s ({p['library']}, square {p['size']}"
                          f"{'' if p['native'] else '; emulated, no peak'})" for name, p in peaks.items())
    print(f"\nCPU: {machine['cpu']}, flags {' '.join(machine['cpu_flags']) or 'none of interest'}; PyTorch "
          f"{machine['torch']} dispatches to {machine['cpu_capability']}, native bf16: {machine['native_bf16']}.")
    print(f"Matmul peaks ({args.threads} threads, best of torch.matmul and oneDNN): {peak_line}. Load average at the "
          f"start {machine['load_average_start'][0]:.1f}, at the end {machine['load_average'][0]:.1f}. Predictors "
          f"{'without' if args.no_reuse_memory else 'with'} reuse_memory (glibc keeps freed memory for reuse).")
    print("GFLOPs: 2 x multiply-accumulates of matmul, convolution and attention (FlopCounterMode) of the graph each "
          "row runs (eager: the Predictor's network; compile / ONNX Runtime: the plain graph); deformable sampling "
          "(embedding_bag / grid_sample), norms and element-wise ops are not counted. Peak RSS: read after the "
          "timed calls.\n")
    if args.presets:
        print("### Latency (512x512 whole, 512x1024 sliding window 512/341, 3 windows batched)\n")
        print(markdown_table(rows, "latency"))
    if args.fps_presets:
        scales = sorted({row["scale"] for row in rows if row.get("preset") == DEFAULT_MODEL and "scale" in row})
        print(f"\n### Frame rate ({args.fps_size[1]}x{args.fps_size[0]}, whole image; {DEFAULT_MODEL} at its "
              f"recommended input scale {', '.join(map(str, scales)) or 'n/a'})\n")
        print(markdown_table(rows, "fps"))
    if args.profile:
        print("\n### Time per operator class (% of one profiled call; training.op_profile)\n")
        print(op_profile.markdown_table(rows))
    print(f"\nJSON written to {args.output}")


if __name__ == "__main__":
    main()
