"""Live evaluation through a real segmentation node process, and the one-command demo.

The node loads the same tiny-model checkpoint as the offline reference. Frames are 2 s apart in
the bag and the tiny model needs a fraction of that on small frames, so at rate 1 nothing drops and
the node's outputs must score exactly as the Predictor run offline, and as training.evaluate on the
same images; the three reports have the same files and fields.
"""
import json

import numpy as np
import pytest
from tqdm_core import InferenceOptions, Predictor
from tqdm_core.data import CamVidDataset
from tqdm_core.evaluation import ModelInfo, write_report
from tqdm_core.default_model import DEFAULT_CHECKPOINT
from tqdm_core.evaluation.report import PICTURES
import yaml

from tests.ros.bag.evaluation_fixtures import (  # noqa: F401 (fixtures)
    camvid_bag, NUM_FRAMES, small_camvid, tiny_checkpoint)
from tests.ros.ros_harness import node_command, NodeProcess, REPO_ROOT
from tqdm_ros import demo
from tqdm_ros.bag.bag_reader import summarize_bag
from tqdm_ros.bag.evaluate import evaluate_live, evaluate_offline
from tqdm_ros.bag.live_source import LiveConfig

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


def json_fields(value, prefix=''):
    """Return the set of key paths of a JSON document (list items share one path)."""
    if isinstance(value, dict):
        return {f'{prefix}/{key}' for key in value} | {
            path for key, item in value.items() for path in json_fields(item, f'{prefix}/{key}')}
    if isinstance(value, list):
        return {path for item in value for path in json_fields(item, f'{prefix}[]')}
    return set()


def test_live_at_rate_1_scores_as_offline_and_as_training_evaluate(
        camvid_bag, small_camvid, tiny_checkpoint, node, ros_context, tmp_path):
    live = evaluate_live(camvid_bag, context=ros_context, record_to=tmp_path / 'outputs',
                         live=LiveConfig(rate=1.0, discovery_timeout_s=NODE_START_TIMEOUT_S,
                                         settle_timeout_s=20.0))
    assert node.returncode is None, node.output
    assert live.dropped == () and live.frames_scored == NUM_FRAMES
    offline = evaluate_offline(camvid_bag, Predictor.from_checkpoint(tiny_checkpoint),
                               model=ModelInfo(name='tiny', source='test', trained=False))
    training_evaluate = pytest.importorskip('training.evaluate')
    scaled = training_evaluate.ScaledPredictor(
        training_evaluate.load_model(tiny_checkpoint), None, InferenceOptions())
    dataset = training_evaluate.evaluate_dataset(
        scaled, CamVidDataset(small_camvid, split='val'), label='camvid_val', progress=False)
    for report in (offline, dataset):
        assert live.evaluator.evaluate()['miou'] == report.evaluator.evaluate()['miou']
        np.testing.assert_array_equal(live.evaluator.counts, report.evaluator.counts)
        np.testing.assert_array_equal(live.calibration.bin_counts, report.calibration.bin_counts)
    folders = {name: write_report(report, tmp_path / name)
               for name, report in (('live', live), ('offline', offline), ('dataset', dataset))}
    files = {name: sorted(p.name for p in folder.iterdir()) for name, folder in folders.items()}
    assert files['live'] == files['offline'] == files['dataset'] == sorted(
        ['report.json', 'summary.md', *PICTURES.values()])
    data = {name: json.loads((folder / 'report.json').read_text())
            for name, folder in folders.items()}
    # The same fields, but for the few each producer adds to `run` and the model details.
    fields = {name: {f for f in json_fields(report)
                     if not f.startswith(('/run/', '/model/details/'))}
              for name, report in data.items()}
    assert fields['live'] == fields['offline'] == fields['dataset']
    assert data['live']['metrics'] == data['offline']['metrics'] == data['dataset']['metrics']
    assert live.run['replay_rate'] == 1.0 and live.model_classes.name == 'cityscapes19'
    assert live.latencies_ms.size == NUM_FRAMES and (live.latencies_ms > 0).all()
    recorded = {t.name: t.message_count for t in summarize_bag(tmp_path / 'outputs').topics}
    # The scoring above used every frame; the recorder is a second, independent subscriber whose
    # confidence subscription can match the node's publisher after the first frame (DDS discovery
    # race seen once under load), so its bag must hold every frame's labels and some confidence.
    assert recorded['/camera/segmentation/labels'] == NUM_FRAMES
    assert 1 <= recorded['/camera/segmentation/confidence'] <= NUM_FRAMES


def test_live_evaluation_without_message_info(camvid_bag, node, ros_context, monkeypatch):
    """Humble's rclpy gives callbacks no MessageInfo: reception times stand in for the
    publication and arrival stamps, and every frame is still scored."""
    from tqdm_ros.bag import live_source

    monkeypatch.setattr(live_source, 'MESSAGE_INFO_CALLBACKS', False)
    live = evaluate_live(camvid_bag, context=ros_context,
                         live=LiveConfig(rate=1.0, discovery_timeout_s=NODE_START_TIMEOUT_S,
                                         settle_timeout_s=20.0))
    assert node.returncode is None, node.output
    assert live.dropped == () and live.frames_scored == NUM_FRAMES
    assert live.latencies_ms.size == NUM_FRAMES and (live.latencies_ms > 0).all()


def test_live_without_a_node_times_out_clearly(camvid_bag, ros_context):
    with pytest.raises(TimeoutError, match='no segmentation node publishes /nobody/labels'):
        evaluate_live(camvid_bag, context=ros_context,
                      live=LiveConfig(output_namespace='/nobody', discovery_timeout_s=0.5))


def test_demo_runs_the_shipped_model(tmp_path, capsys):
    """The demo's default path: the default model through the node, on 2 frames."""
    output = tmp_path / 'demo'
    assert demo.main(['-o', str(output), '--frames', '2',
                      '--node-timeout', str(NODE_START_TIMEOUT_S)]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith(f'report and pictures in {output}')
    report = json.loads((output / 'report.json').read_text())
    assert report['mode'] == 'live' and report['model']['trained'] is True
    assert report['model']['source'] == str(DEFAULT_CHECKPOINT)
    assert report['frames']['total'] == 2
    assert report['frames']['scored'] + report['frames']['dropped'] == 2
    assert report['classes']['model']['name'] == 'camvid11'
    assert not any('untrained' in note for note in report['notes'])
    assert report['source'] == str(output / 'camvid_sample_bag')
    for name in PICTURES.values():
        assert (output / name).stat().st_size > 0, name
    assert summarize_bag(output / 'node_outputs_bag').message_count > 0
    assert (output / 'node.log').is_file() and (output / 'summary.md').is_file()
    assert [p.name for p in tmp_path.iterdir()] == ['demo']


def test_outputs_of_frames_without_ground_truth_are_not_kept():
    """Frames are scored in stamp order: once frame 3 is taken, the node's outputs for frames 1
    and 2 (no ground truth, never asked for) are dropped instead of piling up for the run."""
    from tqdm_ros.bag import live_source

    outputs = live_source._NodeOutputs()
    for stamp in range(1, 6):
        outputs.labels[stamp] = (np.zeros((2, 2), np.uint8), 0)
        outputs.confidence[stamp] = np.zeros((2, 2), np.float32)
        outputs.published_ns[stamp] = 0
    outputs.newest_labels_ns = 5
    assert outputs.take(3, deadline=lambda: None) is not None
    assert sorted(outputs.labels) == sorted(outputs.confidence) == sorted(outputs.published_ns) == [
        4, 5]
