"""Evaluation of bags whose camera frames are sensor_msgs/CompressedImage, offline and live.

The same downscaled CamVid frames are stored raw, as PNG and as JPEG. PNG is lossless, so its
scores must equal the raw bag's exactly, offline and through a node that subscribes to the
compressed topic; JPEG changes pixels, so its scores are only reported.
"""
import json

import numpy as np
import pytest
from tqdm_core import Predictor
from tqdm_core.evaluation import ModelInfo
import yaml

from tests.ros.bag.conftest import START_NS
from tests.ros.bag.evaluation_fixtures import (  # noqa: F401 (fixtures)
    BAG_RATE_HZ, camvid_bag, NUM_FRAMES, small_camvid, tiny_checkpoint)
from tests.ros.ros_harness import node_command, NodeProcess, REPO_ROOT
from tqdm_ros.bag.cli import main
from tqdm_ros.bag.evaluate import evaluate_live, evaluate_offline
from tqdm_ros.bag.live_source import LiveConfig
from tqdm_ros.bag.make_bag import find_frames, make_bag, MakeBagConfig

MODEL = ModelInfo(name='tqdm-tiny-rn', source='test checkpoint', trained=False)
NODE_START_TIMEOUT_S = 120.0


@pytest.fixture(scope='module')
def compressed_bags(small_camvid, tmp_path_factory) -> dict:
    """The raw bag's frames and stamps as PNG and as JPEG bags."""
    folder = tmp_path_factory.mktemp('compressed_bags')
    return {codec: make_bag(find_frames(small_camvid), folder / codec, config=MakeBagConfig(
        start_time_ns=START_NS, rate_hz=BAG_RATE_HZ, stamp_jitter_ms=0.0,
        compression=codec)).path for codec in ('png', 'jpeg')}


@pytest.fixture(scope='module')
def raw_report(camvid_bag, tiny_checkpoint):
    return evaluate_offline(camvid_bag, Predictor.from_checkpoint(tiny_checkpoint), model=MODEL)


def test_offline_png_scores_equal_raw_exactly(compressed_bags, raw_report, tiny_checkpoint):
    png = evaluate_offline(compressed_bags['png'], Predictor.from_checkpoint(tiny_checkpoint),
                           model=MODEL)
    assert png.frames_scored == raw_report.frames_scored == NUM_FRAMES
    np.testing.assert_array_equal(png.evaluator.counts, raw_report.evaluator.counts)
    np.testing.assert_array_equal(png.calibration.bin_counts, raw_report.calibration.bin_counts)


def test_cli_reports_a_jpeg_bag_from_the_camera_name(compressed_bags, tiny_checkpoint,
                                                     tmp_path, capsys):
    """--image-topic stays /camera/image_raw: the bag's /compressed sibling is found."""
    output = tmp_path / 'jpeg_report'
    assert main(['evaluate', str(compressed_bags['jpeg']), '-o', str(output),
                 '--checkpoint', str(tiny_checkpoint)]) == 0, capsys.readouterr().err
    report = json.loads((output / 'report.json').read_text())
    assert report['frames']['scored'] == NUM_FRAMES
    assert 0.0 <= report['metrics']['miou'] <= 1.0


@pytest.fixture(scope='module')
def compressed_node(ros_domain, tiny_checkpoint, tmp_path_factory):
    """A node reading the camera as CompressedImage (input_transport: compressed)."""
    params = tmp_path_factory.mktemp('compressed_node') / 'node.yaml'
    params.write_text(yaml.safe_dump({'/**/segmentation_node': {'ros__parameters': {
        'checkpoint': str(tiny_checkpoint), 'preset': 'tqdm-tiny-rn',
        'input_topics': ['/camera/image_raw'], 'input_transport': 'compressed'}}}))
    process = NodeProcess(node_command(
        '--params-file', str(REPO_ROOT / 'config' / 'segment.yaml'), '--params-file', str(params)))
    yield process
    process.stop()


def test_live_png_through_a_compressed_node_scores_as_raw_offline(
        compressed_bags, raw_report, compressed_node, ros_context):
    live = evaluate_live(compressed_bags['png'], context=ros_context, live=LiveConfig(
        rate=1.0, discovery_timeout_s=NODE_START_TIMEOUT_S, settle_timeout_s=20.0))
    assert compressed_node.returncode is None, compressed_node.output
    assert live.run['camera_topic'] == '/camera/image_raw/compressed'
    assert live.run['output_namespace'] == '/camera/segmentation'
    assert live.dropped == () and live.frames_scored == NUM_FRAMES
    np.testing.assert_array_equal(live.evaluator.counts, raw_report.evaluator.counts)
    np.testing.assert_array_equal(live.calibration.bin_counts, raw_report.calibration.bin_counts)
