"""Live evaluation through a real segmentation node process, and the one-command demo.

The node loads the same tiny-model checkpoint as the offline reference. Frames are 2 s apart in
the bag and the tiny model needs a fraction of that on small frames, so at rate 1 nothing drops and
the node's outputs must score exactly as the Predictor run offline.
"""
import json

import numpy as np
import pytest
from tqdm_core import Predictor
import yaml

from tests.ros.bag.evaluation_fixtures import (  # noqa: F401 (fixtures)
    camvid_bag, NUM_FRAMES, small_camvid, tiny_checkpoint)
from tests.ros.ros_harness import node_command, NodeProcess, REPO_ROOT
from tqdm_ros import demo
from tqdm_ros.bag.bag_reader import summarize_bag
from tqdm_ros.bag.evaluate import evaluate_live, evaluate_offline, LiveConfig
from tqdm_ros.bag.report import ModelInfo, PICTURES

NODE_START_TIMEOUT_S = 120.0  # torch import and model load on a shared 2-core machine


@pytest.fixture(scope='module')
def node(ros_domain, tiny_checkpoint, tmp_path_factory):
    params = tmp_path_factory.mktemp('node') / 'node.yaml'
    params.write_text(yaml.safe_dump({'/**/segmentation_node': {'ros__parameters': {
        'checkpoint': str(tiny_checkpoint), 'preset': 'tqdm-tiny-rn',
        'input_topics': ['/camera/image_raw']}}}))
    process = NodeProcess(node_command(
        '--params-file', str(REPO_ROOT / 'config' / 'segment.yaml'), '--params-file', str(params)))
    yield process
    process.stop()


def test_live_at_rate_1_scores_as_offline(camvid_bag, tiny_checkpoint, node, ros_context,
                                          tmp_path):
    live = evaluate_live(camvid_bag, context=ros_context, record_to=tmp_path / 'outputs',
                         live=LiveConfig(rate=1.0, discovery_timeout_s=NODE_START_TIMEOUT_S,
                                         settle_timeout_s=20.0))
    assert node.returncode is None, node.output
    assert live.dropped_stamps_ns == () and live.frames_scored == NUM_FRAMES
    offline = evaluate_offline(camvid_bag, Predictor.from_checkpoint(tiny_checkpoint),
                               model=ModelInfo(name='tiny', source='test', trained=False))
    assert live.evaluator.evaluate()['miou'] == offline.evaluator.evaluate()['miou']
    np.testing.assert_array_equal(live.evaluator.counts, offline.evaluator.counts)
    np.testing.assert_array_equal(live.calibration.bin_counts, offline.calibration.bin_counts)
    assert live.run['replay_rate'] == 1.0 and live.model_classes.name == 'cityscapes19'
    assert live.latencies_ms.size == NUM_FRAMES and (live.latencies_ms > 0).all()
    recorded = {t.name: t.message_count for t in summarize_bag(tmp_path / 'outputs').topics}
    # The scoring above used every frame; the recorder is a second, independent subscriber whose
    # confidence subscription can match the node's publisher after the first frame (DDS discovery
    # race seen once under load), so its bag must hold every frame's labels and some confidence.
    assert recorded['/camera/segmentation/labels'] == NUM_FRAMES
    assert 1 <= recorded['/camera/segmentation/confidence'] <= NUM_FRAMES


def test_live_without_a_node_times_out_clearly(camvid_bag, ros_context):
    with pytest.raises(TimeoutError, match='no segmentation node publishes /nobody/labels'):
        evaluate_live(camvid_bag, context=ros_context,
                      live=LiveConfig(output_namespace='/nobody', discovery_timeout_s=0.5))


def test_demo_runs_and_says_the_model_is_untrained(tmp_path, monkeypatch, capsys):
    """The demo's default path without a shipped checkpoint, on 2 frames with the tiny preset."""
    monkeypatch.setattr(demo, 'default_checkpoint', lambda: None)
    monkeypatch.setattr(demo, 'UNTRAINED_PRESET', 'tqdm-tiny-rn')
    output = tmp_path / 'demo'
    assert demo.main(['-o', str(output), '--frames', '2', '--input-scale', '0.2',
                      '--node-timeout', str(NODE_START_TIMEOUT_S)]) == 0
    printed = capsys.readouterr().out
    assert 'WARNING: the model is untrained (random weights)' in printed
    assert printed.rstrip().endswith(f'report and pictures in {output}')
    report = json.loads((output / 'report.json').read_text())
    assert report['mode'] == 'live' and report['model']['trained'] is False
    assert report['frames']['in_bag'] == 2
    assert report['frames']['scored'] + report['frames']['dropped'] == 2
    assert report['notes'][0].startswith('the model is untrained')
    assert report['bag'] == str(output / 'camvid_sample_bag')
    for name in PICTURES.values():
        assert (output / name).stat().st_size > 0, name
    assert summarize_bag(output / 'node_outputs_bag').message_count > 0
    assert (output / 'node.log').is_file() and (output / 'summary.md').is_file()
    assert [p.name for p in tmp_path.iterdir()] == ['demo']
