"""Live evaluation through a real segmentation node process, and the one-command demo.

The node loads the same tiny-model checkpoint as the offline reference. Frames are 2 s apart in
the bag and the tiny model needs a fraction of that on small frames, so at rate 1 nothing drops and
the node's outputs must score exactly as the Predictor run offline, and as training.evaluate on the
same images; the three reports have the same files and fields.
"""
import json
import struct
import threading
import time

import numpy as np
import pytest
from tqdm_core import InferenceOptions, Predictor
from tqdm_core.data import CamVidDataset
from tqdm_core.evaluation import ModelInfo, write_report
from tqdm_core.default_model import DEFAULT_CHECKPOINT
from tqdm_core.evaluation.report import PICTURES
import yaml

from tests.ros.bag.conftest import START_NS
from tests.ros.bag.evaluation_fixtures import (  # noqa: F401 (fixtures)
    BAG_RATE_HZ, camvid_bag, NUM_FRAMES, small_camvid, tiny_checkpoint)
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
    # What the node ran, from its /diagnostics model status (it runs in another process).
    details = data['live']['model']['details']
    assert details['preset'] == 'tqdm-tiny-rn' and details['precision'] in ('fp32', 'bf16')
    assert data['live']['model']['source'] == str(tiny_checkpoint)
    assert data['live']['model']['name'] == 'tqdm-tiny-rn'
    assert live.latencies_ms.size == NUM_FRAMES and (live.latencies_ms > 0).all()
    # The node's own model time, from its /diagnostics camera status.
    assert live.model_time_p50_ms is not None and live.model_time_p50_ms > 0
    assert data['live']['model_time_p50_ms'] == live.model_time_p50_ms
    assert data['offline']['model_time_p50_ms'] is None  # its latency is the model time
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
    # The frames' stamps map back to the sample files they were made from.
    assert [record['source_file'] for record in report['per_frame']] == sorted(
        path.name for path in (demo.SAMPLE_FRAMES / 'val').glob('*.png'))[:2]
    for name in PICTURES.values():
        assert (output / name).stat().st_size > 0, name
    assert summarize_bag(output / 'node_outputs_bag').message_count > 0
    assert (output / 'node.log').is_file() and (output / 'summary.md').is_file()
    # How the node ended: its log says so, the report keeps it, no warning when it was clean.
    assert (output / 'node.log').read_text().splitlines()[-1] == (
        '[demo] the segmentation node shut down on SIGINT with exit code 0')
    assert report['run']['node_exit'] == {'returncode': 0, 'stop': 'SIGINT'}
    assert [p.name for p in tmp_path.iterdir()] == ['demo']


def _deliver(outputs, stamp, *topics):
    """Hand ``outputs`` the node's 2x2 answer for ``stamp`` on the given topics."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header
    from tqdm_ros.image_conversion import numpy_to_image

    header = Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000))
    if 'labels' in topics:
        outputs.on_labels(numpy_to_image(np.full((2, 2), stamp % 200, np.uint8), 'mono8',
                                         header=header), None)
    if 'confidence' in topics:
        outputs.on_confidence(numpy_to_image(np.full((2, 2), 0.5, np.float32), '32FC1',
                                             header=header))


def _camera_message(stamp):
    """The start of a camera message's CDR bytes with header stamp ``stamp`` ns: the
    encapsulation header (little endian), then stamp.sec and stamp.nanosec."""
    return b'\x00\x01\x00\x00' + struct.pack('<iI', stamp // 1_000_000_000,
                                              stamp % 1_000_000_000)


def _no_deadline():
    return None


def test_answers_to_frames_with_decreasing_stamps_are_scored():
    """Stamps of a recording need not increase (a driver restart, a clock jump): frame 50 is
    published after frame 200. Taking 200 must neither forget 50's answer nor call 50 dropped
    because a larger stamp was answered; 50 is awaited until it comes."""
    from tqdm_ros.bag import live_source

    outputs = live_source._NodeOutputs({200: 0, 50: 1, 70: 2}, wanted=[200, 50, 70])
    _deliver(outputs, 200, 'labels', 'confidence')
    _deliver(outputs, 50, 'labels', 'confidence')
    assert outputs.take(200, deadline=_no_deadline) is not None
    taken = outputs.take(50, deadline=_no_deadline)
    assert taken is not None and (taken[0] == 50).all()
    # Nothing of frame 70 yet, while the replay runs: take waits for it.
    threading.Timer(0.3, _deliver, (outputs, 70, 'labels', 'confidence')).start()
    started = time.monotonic()
    taken = outputs.take(70, deadline=lambda: started + 10.0)
    assert taken is not None and (taken[0] == 70).all()
    assert 0.2 < time.monotonic() - started < 5.0
    assert outputs.labels == outputs.confidence == {}


def test_a_frame_is_dropped_once_a_later_published_frame_is_answered():
    """The node skipped frame 300 (published first) and answered frame 100 (published next):
    300's answer will never come, whatever the stamps say."""
    from tqdm_ros.bag import live_source

    outputs = live_source._NodeOutputs({300: 0, 100: 1}, wanted=[300, 100])
    _deliver(outputs, 100, 'labels', 'confidence')
    assert outputs.take(300, deadline=_no_deadline) is None
    assert outputs.take(100, deadline=_no_deadline) is not None
    assert outputs.confidence_lost == 0


def test_a_lost_confidence_message_drops_its_frame_without_stalling():
    """Frame 1's confidence message is lost; frame 2's arrives. Frame 1 is dropped at once (it
    used to be awaited until the replay ended, while every later output piled up), counted as a
    lost confidence, and frame 2 is scored."""
    from tqdm_ros.bag import live_source

    outputs = live_source._NodeOutputs({1: 0, 2: 1, 3: 2}, wanted=[1, 2, 3])
    _deliver(outputs, 1, 'labels')
    _deliver(outputs, 2, 'labels', 'confidence')
    started = time.monotonic()
    assert outputs.take(1, deadline=lambda: started + 3.0) is None
    assert time.monotonic() - started < 1.0
    assert outputs.confidence_lost == 1
    assert outputs.take(2, deadline=_no_deadline) is not None
    # Its confidence alone: frame 3 is awaited until the labels come or the deadline passes.
    _deliver(outputs, 3, 'confidence')
    assert outputs.take(3, deadline=lambda: time.monotonic() - 1) is None
    assert outputs.confidence_lost == 1


def test_only_outputs_of_awaited_frames_are_kept():
    """Outputs of frames without ground truth (2, 4), of frames not in the bag (99) and answers
    arriving after their frame was taken are not kept, so nothing piles up over a long run (a
    10 Hz camera with 1 Hz ground truth)."""
    from tqdm_ros.bag import live_source

    outputs = live_source._NodeOutputs({stamp: stamp - 1 for stamp in range(1, 6)},
                                       wanted=[1, 3, 5])
    for stamp in (1, 2, 3, 4, 99):
        _deliver(outputs, stamp, 'labels', 'confidence')
        outputs.on_camera(_camera_message(stamp), None)
    assert sorted(outputs.labels) == sorted(outputs.confidence) == [1, 3]
    assert sorted(outputs.published_ns) == [1, 3]
    assert outputs.take(1, deadline=_no_deadline) is not None
    assert outputs.take(3, deadline=_no_deadline) is not None
    _deliver(outputs, 3, 'labels', 'confidence')  # a late duplicate
    assert outputs.labels == outputs.confidence == outputs.published_ns == {}


def test_replay_plan_reads_the_publication_order_and_the_labelled_frames(camvid_bag):
    from tqdm_ros.bag import live_source
    from tqdm_ros.bag.evaluate import BagFrames

    plan = live_source._replay_plan(BagFrames(path=camvid_bag, image_topic='/camera/image_raw',
                                              label_topic='/camera/ground_truth'))
    stamps = [START_NS + round(index * 1e9 / BAG_RATE_HZ) for index in range(NUM_FRAMES)]
    assert plan.publication_order == {stamp: index for index, stamp in enumerate(stamps)}
    assert plan.labelled == frozenset(stamps) and plan.first_stamp == stamps[0]
    assert plan.period_s == pytest.approx(1 / BAG_RATE_HZ)


def test_report_tells_lost_confidence_from_frames_the_node_dropped(camvid_bag, monkeypatch):
    """Of three frames, one is scored, one the node skipped and one lost its confidence message:
    the notes name each cause with its own count."""
    from contextlib import contextmanager

    from tqdm_core import CAMVID_11
    from tqdm_core.evaluation import DroppedFrame, ScoredFrame
    from tqdm_ros.bag import live_source
    from tqdm_ros.bag.evaluate import labeled_frames
    from tqdm_ros.bag.bag_reader import open_bag

    class Session:
        model_classes = CAMVID_11
        run = {'replay_rate': 0.5, 'output_namespace': '/camera/segmentation'}
        confidence_lost = 1
        model_details = {}  # the node reported nothing on /diagnostics
        model_time_p50_ms = None

        def __init__(self, frames):
            self.bag_frames = frames

        def frames(self):
            with open_bag(self.bag_frames.path) as reader:
                (_, first), (_, second), (_, third) = labeled_frames(reader, self.bag_frames)
            yield ScoredFrame(sample=first, labels=first.ground_truth,
                              confidence=np.ones(first.ground_truth.shape, np.float32),
                              latency_ms=1.0)
            yield DroppedFrame(second.name)
            yield DroppedFrame(third.name)

    @contextmanager
    def fake_source(frames, **kwargs):
        yield Session(frames)

    monkeypatch.setattr(live_source, 'live_node_source', fake_source)
    report = evaluate_live(camvid_bag, context=None)
    assert report.notes[-2:] == (
        f'1 of {NUM_FRAMES} frames were dropped by the node (it keeps only the newest frame): '
        'replay slower than rate 0.5',
        f'1 of {NUM_FRAMES} frames got their labels but their confidence message was lost; they '
        'count as dropped')


def test_the_model_status_of_the_node_segmenting_the_camera_is_kept():
    """Two nodes on /diagnostics: only the one whose camera status names the replayed topic counts."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from tqdm_ros.bag.live_source import _NodeModelStatus

    def status(name, **values):
        return DiagnosticStatus(name=name, values=[KeyValue(key=k, value=v)
                                                   for k, v in values.items()])

    model_status = _NodeModelStatus('camera/image_raw')
    model_status.on_diagnostics(DiagnosticArray(status=[
        status('/other_node: model', preset='tqdm-eva02-l14'),
        status('/other_node: /left/image_raw')]))
    assert model_status.values == {}
    model_status.on_diagnostics(DiagnosticArray(status=[
        status('/ns/segmentation_node: model', preset='tqdm-small-rn', precision='bf16'),
        status('/ns/segmentation_node: /camera/image_raw')]))
    assert model_status.values == {'node': '/ns/segmentation_node', 'preset': 'tqdm-small-rn',
                                   'precision': 'bf16'}
    model_status.on_diagnostics(DiagnosticArray(status=[  # finalized: no model, the last is kept
        status('/ns/segmentation_node: model', state='finalized'),
        status('/ns/segmentation_node: /camera/image_raw')]))
    assert model_status.values['preset'] == 'tqdm-small-rn'


def test_the_model_time_of_the_node_segmenting_the_camera_is_kept():
    """The node's camera status carries its model time (inference_p50_ms) and how many frames it
    processed; the evaluator keeps the model time of the node segmenting the replayed topic and
    waits for a status that counts every answer it took."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from tqdm_ros.bag.live_source import _NodeModelStatus

    def camera(name, **values):
        return DiagnosticArray(status=[DiagnosticStatus(
            name=name, values=[KeyValue(key=k, value=v) for k, v in values.items()])])

    model_status = _NodeModelStatus('/camera/image_raw')
    assert model_status.model_time_p50_ms is None
    assert model_status.wait_for_processed(3, timeout_s=0.1)  # nothing heard: no wait
    model_status.on_diagnostics(camera('/other: /left/image_raw', inference_p50_ms='9.00',
                                       processed='50'))
    assert model_status.model_time_p50_ms is None
    model_status.on_diagnostics(camera('/ns/segmentation_node: /camera/image_raw',
                                       inference_p50_ms='412.50', processed='2'))
    assert model_status.model_time_p50_ms == 412.5
    assert not model_status.wait_for_processed(3, timeout_s=0.1)
    threading.Timer(0.2, model_status.on_diagnostics, (camera(
        '/ns/segmentation_node: /camera/image_raw', inference_p50_ms='400.25',
        processed='3'),)).start()
    assert model_status.wait_for_processed(3, timeout_s=10.0)
    assert model_status.model_time_p50_ms == 400.25


def test_summary_shows_the_node_model_time_and_what_latency_measures(camvid_bag, monkeypatch):
    """Latency of a live evaluation is the round trip through the node; the node's own model
    time, when it reports one, is a line of its own."""
    from contextlib import contextmanager

    from tqdm_core import CAMVID_11
    from tqdm_core.evaluation import format_summary, ScoredFrame
    from tqdm_ros.bag import live_source
    from tqdm_ros.bag.bag_reader import open_bag
    from tqdm_ros.bag.evaluate import labeled_frames

    class Session:
        model_classes = CAMVID_11
        run = {'replay_rate': 1.0, 'output_namespace': '/camera/segmentation'}
        confidence_lost = 0
        model_details = {}
        model_time_p50_ms = 412.5

        def __init__(self, frames):
            self.bag_frames = frames

        def frames(self):
            with open_bag(self.bag_frames.path) as reader:
                for _, sample in labeled_frames(reader, self.bag_frames):
                    yield ScoredFrame(sample=sample, labels=sample.ground_truth,
                                      confidence=np.ones(sample.ground_truth.shape, np.float32),
                                      latency_ms=500.0)

    @contextmanager
    def fake_source(frames, **kwargs):
        yield Session(frames)

    monkeypatch.setattr(live_source, 'live_node_source', fake_source)
    report = evaluate_live(camvid_bag, context=None)
    assert report.model_time_p50_ms == 412.5
    summary = format_summary(report)
    assert ("| model time p50 | 412.5 ms (the node's own median on /diagnostics, warm-up frame "
            'included) |') in summary
    assert ('Latency (label arrival minus frame publication) is the whole round trip: transport '
            'to and from the node, waiting for its worker, decoding and publishing, and the model '
            'time.') in summary
