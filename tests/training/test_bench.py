"""The benchmark's command line: it measures what it is asked to, records the machine, and refuses empty runs.

Speed targets are read from its output by people, never asserted here; this checks the tooling on tiny
configurations (a few seconds each)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

import tqdm_core
from tqdm_core import create_model, Predictor
from tqdm_core.inference.export import InferenceGraph
from tqdm_core.modeling import attention
from training import bench

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.bench", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def test_frame_rate_table_alone(tmp_path):
    output = tmp_path / "bench.json"
    result = run_bench("--quick", "--no-latency", "--fps-presets", "tqdm-tiny-rn", "--fps-size", "64x48",
                       "--precisions", "fp32", "--runtimes", "torch", "--repeats", "1", "--threads", "1",
                       "--output", str(output), env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "### Frame rate (64x48" in result.stdout and "### Latency" not in result.stdout
    report = json.loads(output.read_text())
    [row] = report["results"]
    assert (row["preset"], row["table"], row["height"], row["width"]) == ("tqdm-tiny-rn", "fps", 48, 64)
    assert row["median_s"] > 0 and row["fps"] == 1 / row["median_s"] and row["flops"] > 0
    assert report["machine"]["cpu"] and "fp32" in report["matmul_peaks"]
    assert row["flops_counted_on"] == bench.FLOPS_COUNTED_ON["torch"] and row["warmup"] == 2
    machine = report["machine"]
    assert "--fps-size" in machine["command"] and machine["environment"]["OMP_NUM_THREADS"] == "1"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    assert machine["git"]["commit"] == (head or None)


def test_nothing_to_measure_is_refused():
    result = run_bench("--no-fps", "--no-latency")
    assert result.returncode == 2 and "leave nothing to measure" in result.stderr


def bench_config(**fields) -> bench.BenchConfig:
    values = dict(preset="tqdm-tiny-rn", height=64, width=96, precision="fp32", runtime="torch", table="fps",
                  threads=1, repeats=1, warmup=1, budget_s=30.0)
    return bench.BenchConfig(**(values | fields))


@pytest.fixture
def without_native_bf16(monkeypatch):
    """This CPU as one without AVX512-BF16, AMX or Arm BF16."""
    monkeypatch.setattr(bench, "cpu_has_native_bf16", lambda: False)


def test_bf16_percent_of_peak_is_not_available_without_native_bf16(without_native_bf16, monkeypatch):
    """An emulated bf16 matmul is no peak (the model's bf16 kernels outran it: up to 942 % of "peak" in old files)."""
    monkeypatch.setattr(bench, "matmul_peak", lambda dtype, max_size: {"gflops": 2.0, "size": 512, "library": "x"})
    peaks = bench.measure_peaks(["fp32", "bf16"], max_size=512)
    assert (peaks["fp32"]["native"], peaks["bf16"]["native"]) == (True, False)
    result = {"flops": 8e9, "latencies_s": [1.0], "peak_rss_mb": 100.0}
    bf16 = bench.summarise(bench_config(precision="bf16"), result, peaks)
    fp32 = bench.summarise(bench_config(precision="fp32"), result, peaks)
    assert bf16["peak_fraction"] is None and "no native bf16" in bf16["peak_fraction_reason"]
    assert json.loads(json.dumps(bf16))["peak_fraction"] is None
    assert fp32["peak_fraction"] == 4.0 and "peak_fraction_reason" not in fp32
    table = bench.markdown_table([bf16, fp32], "fps")
    assert "| 8.0 | n/a |" in table and "| 8.0 | 400% |" in table


def test_bf16_is_skipped_by_default_without_native_bf16(without_native_bf16, capsys):
    args = bench.parse_args([])
    assert args.precisions == ["fp32"] and args.bf16_skipped
    assert "emulated" not in capsys.readouterr().err
    args = bench.parse_args(["--precisions", "fp32,bf16"])  # asked for: measured, with a warning
    assert args.precisions == ["fp32", "bf16"] and not args.bf16_skipped
    assert "warning: bf16 on this CPU" in capsys.readouterr().err


def test_bf16_is_measured_by_default_with_native_bf16(monkeypatch):
    monkeypatch.setattr(bench, "cpu_has_native_bf16", lambda: True)
    assert bench.parse_args([]).precisions == ["fp32", "bf16"]


def test_default_threads_follow_the_affinity_mask(monkeypatch):
    """A process pinned to one CPU of eight (taskset, a cpuset) gets one thread, not eight."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {3})
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert bench.parse_args([]).threads == 1


def test_two_warm_up_calls_by_default():
    """With reuse_memory a call stops page-faulting after the second: the first timed call is the third."""
    assert bench.parse_args([]).warmup == 2


def test_machine_info_records_what_changes_the_kernels(monkeypatch, tmp_path):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("KMP_BLOCKTIME", "0")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(sys, "argv", ["bench.py", "--threads", "1"])
    machine = bench.machine_info(1)
    environment = machine["environment"]
    assert (environment["ONEDNN_MAX_CPU_ISA"], environment["OMP_WAIT_POLICY"], environment["KMP_BLOCKTIME"]) == (
        "AVX2", "PASSIVE", "0")
    for name in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS", "LD_PRELOAD"):
        assert name in environment
    assert environment["LD_PRELOAD"] is None
    assert machine["command"][1:] == ["bench.py", "--threads", "1"]
    assert set(machine["onednn_dtypes"]) <= {"float32", "bfloat16"}
    assert len(machine["git"]["commit"]) == 40
    monkeypatch.setattr(bench, "REPO_ROOT", tmp_path)  # not a git checkout (an installed package)
    assert bench.machine_info(1)["git"] == {"commit": None, "uncommitted_changes": None}


def plain_graph_flops(model: torch.nn.Module, shape: tuple) -> int:
    """The plain graph's FLOPs by torch's own counter (the CPU flash-attention kernel added, as torch skips it)."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
               lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)}
    graph = InferenceGraph(model=model)  # runs the text encoder once: its cached output is constant
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.no_grad(), counter:
        graph(torch.zeros(shape))
    return counter.get_total_flops()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_with_predictor(monkeypatch, predictor: Predictor, config: bench.BenchConfig) -> dict:
    """`bench.run_config` in this process, on a given Predictor (reuse_memory off: it is process-wide)."""
    monkeypatch.setattr(tqdm_core, "load_predictor", lambda *args, **kwargs: predictor)
    return bench.run_config(config)


def test_eager_flops_are_counted_on_the_folded_text_attention(monkeypatch, one_thread):
    """The Predictor runs pixels -> class-text attention with both query-side projections folded onto the K keys
    (`few_key_attention`), so an eager row's FLOPs are the plain graph's minus, per such call with B images, Nq
    pixels, Nk keys, width C and h heads (2 FLOPs per multiply-accumulate):

        plain:  query and output projections 2 * 2 B Nq C^2, key and value projections 2 * 2 B Nk C^2,
                QK^T and PV 2 * 2 B Nq Nk C
        folded: key and value projections 2 * 2 B Nk C^2, W_q onto the keys 2 B Nk C^2, the query bias onto the
                keys 2 B Nk C, pixels x (C, h Nk) 2 B Nq C h Nk, values through W_o 2 B Nk C^2,
                weights x (h Nk, C) 2 B Nq h Nk C

    Before, the plain graph was counted for every row.
    """
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0,
                         overrides={"pixel_decoder": {"text_attention": True, "heads": 2}})  # 2 x 19 keys < C 64
    predictor = Predictor(model, precision="fp32", mode="whole", reuse_memory=False)
    calls = []
    folded = attention.few_key_attention

    def recorded(attn, query, key, value, *, residual=None):
        calls.append((*query.shape, key.shape[1], attn.num_heads, attn.in_proj_bias is not None))
        return folded(attn, query, key, value, residual=residual)

    monkeypatch.setattr(attention, "few_key_attention", recorded)
    result = run_with_predictor(monkeypatch, predictor, bench_config(height=64, width=96, warmup=0))
    assert calls, "the model must take the few-key path for this test to mean anything"
    layers = len(model.pixel_decoder.encoder)  # one few-key attention per encoder layer and call
    assert len(calls) % layers == 0
    saved = 0
    for batch, pixels, width, keys, heads, query_bias in calls[:layers]:  # one Predictor call's
        plain = 4 * batch * pixels * width ** 2 + 4 * batch * keys * width ** 2 + 4 * batch * pixels * keys * width
        folded_flops = (4 * batch * keys * width ** 2 + 2 * batch * keys * width ** 2
                        + 2 * batch * keys * width * query_bias + 2 * batch * pixels * width * heads * keys
                        + 2 * batch * keys * width ** 2 + 2 * batch * pixels * heads * keys * width)
        saved += plain - folded_flops
    assert result["flops"] == plain_graph_flops(model, (1, 3, 64, 96)) - saved
    assert result["flops_counted_on"] == bench.FLOPS_COUNTED_ON["torch"]


def test_a_bf16_eager_row_never_runs_the_fp32_model(monkeypatch, one_thread):
    """Its FLOPs come from the bf16 network it times, so its peak RSS holds no fp32 activations; before, an fp32
    forward of the plain graph counted them first."""
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    predictor = Predictor(model, precision="bf16", mode="whole", reuse_memory=False)
    fp32_calls = []
    model.register_forward_pre_hook(lambda module, inputs: fp32_calls.append(inputs[0].dtype))
    result = run_with_predictor(monkeypatch, predictor, bench_config(precision="bf16", warmup=0))
    assert fp32_calls == []
    assert result["flops"] == plain_graph_flops(model, (1, 3, 64, 96))  # no few-key attention in this preset
    assert result["peak_rss_after_build_mb"] <= result["peak_rss_mb"]


def test_compile_and_onnx_rows_read_the_peak_rss_before_counting_the_plain_graph(monkeypatch):
    """Their kernels are no torch operators: the plain graph is counted, after the RSS reading."""
    events = []

    class RecordingPredictor:
        model, scale = None, 1.0

        def predict(self, image):
            events.append("call")

    monkeypatch.setattr(bench, "peak_rss_mb", lambda: events.append("rss") or 1.0)
    monkeypatch.setattr(bench, "network_batches", lambda model, config, scale: [(1, 3, 64, 96)])
    monkeypatch.setattr(bench, "count_plain_graph_flops", lambda model, shapes: events.append("count") or 7)
    for runtime in ("onnxruntime", "compile"):
        events.clear()
        result = run_with_predictor(monkeypatch, RecordingPredictor(), bench_config(runtime=runtime, warmup=2))
        assert events == ["rss", "call", "call", "call", "rss", "count"] and result["flops"] == 7
