"""The benchmark's command line: it measures what it is asked to, records the machine, and refuses empty runs.

Speed targets are read from its output by people, never asserted here; this checks the tooling on one tiny
configuration (a few seconds)."""
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.bench", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


def test_frame_rate_table_alone(tmp_path):
    output = tmp_path / "bench.json"
    result = run_bench("--quick", "--no-latency", "--fps-presets", "tqdm-tiny-rn", "--fps-size", "64x48",
                       "--precisions", "fp32", "--runtimes", "torch", "--repeats", "1", "--threads", "1",
                       "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "### Frame rate (64x48" in result.stdout and "### Latency" not in result.stdout
    report = json.loads(output.read_text())
    [row] = report["results"]
    assert (row["preset"], row["table"], row["height"], row["width"]) == ("tqdm-tiny-rn", "fps", 48, 64)
    assert row["median_s"] > 0 and row["fps"] == 1 / row["median_s"] and row["flops"] > 0
    assert report["machine"]["cpu"] and "fp32" in report["matmul_peaks"]


def test_nothing_to_measure_is_refused():
    result = run_bench("--no-fps", "--no-latency")
    assert result.returncode == 2 and "leave nothing to measure" in result.stderr
