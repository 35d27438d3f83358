"""tqdm_ros.bench_node without ROS: the figures it derives and the JSON it writes."""

import json

import pytest
import torch

from tqdm_ros import bench_node


def test_overhead_is_mean_end_to_end_minus_the_node_model_mean():
    """Frames of 10, 12 and 20 ms end to end: mean 14 ms, p50 12 ms; the node's model took 8 ms
    on average, so the overhead is 14 - 8 = 6 ms (the docstring said medians, the code took
    means: both now say means)."""
    row = bench_node.size_row(512, 1024, [0.010, 0.012, 0.020], [0.007, 0.008, 0.009], 0.008,
                              1.5)
    assert row['end_to_end_ms']['mean'] == pytest.approx(14.0)
    assert row['end_to_end_ms']['p50'] == pytest.approx(12.0)
    assert row['predictor_ms']['p50'] == pytest.approx(8.0)
    assert row['node_model_mean_ms'] == pytest.approx(8.0)
    assert row['overhead_ms'] == pytest.approx(6.0)
    assert 'mean end-to-end time minus the mean' in bench_node.__doc__
    assert 'difference of the medians' not in bench_node.__doc__


def test_node_threads_are_the_node_process_s_not_the_benchmark_s(monkeypatch):
    """The node is a child with the benchmark's environment: OMP_NUM_THREADS=1 there gives one
    thread whatever this process set for itself."""
    threads = torch.get_num_threads()
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    torch.set_num_threads(2)
    try:
        assert bench_node.node_torch_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_output_records_the_figures_the_machine_and_the_node_threads(tmp_path, monkeypatch):
    monkeypatch.setenv('OMP_WAIT_POLICY', 'PASSIVE')
    args = bench_node.build_parser().parse_args(
        ['--sizes', '1024x512', '--frames', '3', '--output', str(tmp_path / 'node.json')])
    assert args.output == tmp_path / 'node.json'
    assert bench_node.build_parser().parse_args([]).output is None  # printing only, by default
    row = bench_node.size_row(512, 1024, [0.010, 0.012, 0.020], [0.007, 0.008, 0.009], 0.008,
                              1.5)
    bench_node.write_report(args.output, [row], {'preset': 'tqdm-tiny-rn'}, args,
                            node_threads=1, benchmark_threads=2)
    report = json.loads(args.output.read_text())
    assert report['node_torch_threads'] == 1 and report['machine']['threads'] == 1
    assert report['benchmark_torch_threads'] == 2
    assert report['machine']['cpu'] and 'cpu_flags' in report['machine']
    assert report['machine']['environment']['OMP_WAIT_POLICY'] == 'PASSIVE'
    assert report['settings']['frames'] == 3 and report['benchmark_predictor'] == {'preset': 'tqdm-tiny-rn'}
    assert report['sizes'] == [json.loads(json.dumps(row))]
