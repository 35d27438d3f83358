"""Inference benchmark: latency, model GFLOPs, achieved GFLOP/s and the fraction of this machine's matmul peak.

    python -m training.bench                      # every preset, 512x512 (whole) and 512x1024 (slide), fp32 + bf16
    python -m training.bench --quick              # tiny presets, 2 repeats: checks the tooling in a few minutes
    python -m training.bench --presets tqdm-clip-vit-b16 --precisions fp32 --runtimes torch,onnxruntime,compile

What is measured (issue 8):
- Latency: the Predictor end to end (uint8 image in, labels/confidence out: normalisation, padding, windows,
  network, semantic inference, resize back), median over `--repeats` timed calls after warm-up calls (the first
  calls export or compile where the runtime needs it). 512x512 runs whole (one window); 512x1024 runs the paper's
  sliding window (512 window, stride 341: 3 windows in one batch). The frame-rate table runs --fps-size whole.
- GFLOPs: `torch.utils.flop_counter.FlopCounterMode` over one eager forward of the network on the exact batch
  the Predictor feeds it. It counts 2 FLOPs per multiply-accumulate of matmul/linear (mm, addmm, bmm, baddbmm),
  convolution and transposed convolution, and scaled-dot-product attention (QK^T and PV; the CPU flash kernel
  is registered below because torch does not count it). Element-wise ops, norms, softmax, grid_sample /
  embedding_bag (the deformable sampling) and resizes are NOT counted: they are memory-bound and small in FLOPs.
- Peak: the best rate of a large square `torch.matmul` in fp32 and in bf16 at the same thread count, measured in
  this run (sizes grow until one product takes over a second). "% peak" = achieved GFLOP/s / that peak of the
  configuration's precision (fp32 peak for ONNX Runtime).
- Peak RSS: every configuration runs in its own subprocess; its `ru_maxrss` (model, activations, runtime).
- With --profile, one more call per configuration runs under torch.profiler and its wall time is broken down by
  operator class (matmul, attention, conv, deformable sampling, norm, copies, resize / pool, element-wise,
  Python / dispatch; see training/op_profile.py), with the share outside matmul/attention/conv kernels.
- The machine: CPU model, the flags that decide matmul speed (AVX2, AVX-512, AVX512-BF16, AMX, ...), PyTorch's
  dispatch level and the load average before every configuration are recorded, since other processes may share
  the CPU.

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

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from tqdm_core.modeling import fused_ops
from training import op_profile

PRESETS = ("tqdm-tiny-rn", "tqdm-tiny-vit", "tqdm-clip-rn50", "tqdm-clip-vit-b16", "tqdm-eva02-l14")
SMALL_PRESETS = ("tqdm-tiny-rn", "tqdm-tiny-vit")
DEFAULT_MODEL = "default-model"  # the checkpoint shipped in the package, at its recommended input scale
FPS_PRESETS = (DEFAULT_MODEL, "tqdm-small-rn", "tqdm-tiny-rn", "tqdm-tiny-vit", "tqdm-clip-rn50")
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
RUNTIMES = ("torch", "compile", "onnxruntime")
WINDOW, STRIDE = 512, 341  # the paper's sliding window (METHOD.md section 8)


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
    warmup: int
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


def count_flops(model: torch.nn.Module, shapes: list[tuple[int, int, int, int]]) -> int:
    """FLOPs of the eager network (segmenter + semantic inference) on zero images of the given shapes."""
    from tqdm_core.inference.export import InferenceGraph

    graph = InferenceGraph(model=model)  # the plain ops: fused kernels are not FLOP-counted
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.no_grad(), counter:
        for shape in shapes:
            graph(torch.zeros(shape))
    return counter.get_total_flops()


def run_config(config: BenchConfig) -> dict:
    """Build the Predictor, count FLOPs, time the Predictor; runs inside the worker subprocess."""
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
    flops = count_flops(predictor.model, network_batches(predictor.model, config, predictor.scale))
    image = np.random.default_rng(0).integers(0, 256, (config.height, config.width, 3), dtype=np.uint8)
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
    result = {"flops": flops, "scale": predictor.scale, "latencies_s": latencies, "warmup_s": warmup_s,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if config.profile:
        result["profile"] = op_profile.profile_call(lambda: predictor.predict(image), top=30)
    return result


def run_in_subprocess(config: BenchConfig, timeout_s: float) -> dict:
    """Run one configuration in a fresh interpreter (own peak RSS, no state shared between configurations)."""
    command = [sys.executable, "-m", "training.bench", "--worker", json.dumps(dataclasses.asdict(config))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              cwd=Path(__file__).resolve().parents[1])
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


def summarise(config: BenchConfig, result: dict, peaks: dict[str, dict]) -> dict:
    """Add median latency, fps, GFLOPs, GFLOP/s and % of the precision's matmul peak to a worker result."""
    row = dataclasses.asdict(config) | {"mode": config.mode} | result
    if "error" in result:
        return row
    median = statistics.median(result["latencies_s"])
    gflops = result["flops"] / 1e9
    peak = peaks[config.precision]["gflops"]
    return row | {"median_s": median, "fps": 1.0 / median, "gflops": gflops, "achieved_gflops_per_s": gflops / median,
                  "peak_fraction": gflops / median / peak}


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
                     f"{row['achieved_gflops_per_s']:.1f} | {100 * row['peak_fraction']:.0f}% | "
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
    parser.add_argument("--precisions", type=comma_list(tuple(PRECISION_DTYPES)), default=["fp32", "bf16"])
    parser.add_argument("--runtimes", type=comma_list(RUNTIMES), default=["torch", "onnxruntime"],
                        help="torch (eager), compile (torch.compile, long first call), onnxruntime (fp32)")
    parser.add_argument("--fps-presets", type=comma_list((DEFAULT_MODEL, *list_presets())),
                        default=list(FPS_PRESETS), help=f"presets of the frame-rate table ('{DEFAULT_MODEL}': the "
                        "shipped checkpoint at its recommended input scale)")
    parser.add_argument("--no-fps", action="store_true", help="skip the frame-rate table")
    parser.add_argument("--no-latency", action="store_true", help="skip the 512x512 / 512x1024 table")
    parser.add_argument("--fps-size", type=parse_size, default=(480, 360), help="WxH of the frame-rate table")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (export/compile happen here)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds of timed calls per configuration before stopping early (>= 1 call)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch/ONNX Runtime threads")
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


def machine_info(threads: int) -> dict:
    """CPU model, matmul-relevant flags, PyTorch's dispatch level, threads and load, for the results file."""
    from tqdm_core.inference.precision import cpu_info

    cpu = cpu_info()
    return {"cpu": cpu.model, "cpu_flags": list(cpu.flags), "cpu_capability": cpu.capability,
            "native_bf16": cpu.native_bf16, "threads": threads, "torch": torch.__version__,
            "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_config(BenchConfig(**json.loads(args.worker)))), flush=True)
        return
    load_at_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    max_size = 1024 if args.quick else 4096
    print(f"measuring matmul peaks with {args.threads} threads ...", flush=True)
    peaks = {name: matmul_peak(dtype, max_size=max_size) for name, dtype in PRECISION_DTYPES.items()}
    for name, peak in peaks.items():
        print(f"  {name} matmul peak: {peak['gflops']:.1f} GFLOP/s ({peak['library']}, square {peak['size']})",
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
                  f"GFLOP/s = {100 * row['peak_fraction']:.0f}% of the {config.precision} peak, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    machine = machine_info(args.threads) | {"load_average_start": load_at_start}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine, "matmul_peaks": peaks, "results": rows}, indent=2))
    peak_line = ", ".join(f"{name} {p['gflops']:.1f} GFLOP/s ({p['library']}, square {p['size']})"
                          for name, p in peaks.items())
    print(f"\nCPU: {machine['cpu']}, flags {' '.join(machine['cpu_flags']) or 'none of interest'}; PyTorch "
          f"{machine['torch']} dispatches to {machine['cpu_capability']}, native bf16: {machine['native_bf16']}.")
    print(f"Matmul peaks ({args.threads} threads, best of torch.matmul and oneDNN): {peak_line}. Load average at the "
          f"start {machine['load_average_start'][0]:.1f}, at the end {machine['load_average'][0]:.1f}. Predictors "
          f"{'without' if args.no_reuse_memory else 'with'} reuse_memory (glibc keeps freed memory for reuse).")
    print("GFLOPs: 2 x multiply-accumulates of matmul, convolution and attention (FlopCounterMode); deformable "
          "sampling (embedding_bag / grid_sample), norms and element-wise ops are not counted.\n")
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
