"""Offline evaluation of a bag: the same numbers as scoring the frames directly, clear errors.

The bag is made from downscaled CamVid sample frames; the direct references read the same image
files through tqdm_core's CamVid dataset, so the bag round trip (encoding, stamps, label pairing,
class table) is what is checked. The report is tqdm_core.evaluation's, shared with
training.evaluate (its own tests cover the writer; test_evaluate_live compares the three paths).
"""
import json
import pathlib

import numpy as np
import pytest
from tqdm_core import CAMVID_11, ClassTable, InferenceOptions, Predictor
from tqdm_core.data import CamVidDataset
from tqdm_core.evaluation import EvaluationError, FrameScorer, ModelInfo, SemSegEvaluator
from tqdm_core.evaluation import write_report
from tqdm_core.evaluation.report import PICTURES

from tests.ros.bag.conftest import START_NS, write_camvid
from tests.ros.bag.evaluation_fixtures import (  # noqa: F401 (fixtures)
    camvid_bag, NUM_FRAMES, small_camvid, tiny_checkpoint, write_bag)
from tqdm_ros.bag.bag_reader import BagError
from tqdm_ros.bag.cli import main
from tqdm_ros.bag.evaluate import evaluate_offline, EvaluationConfig, frame_name
from tqdm_ros.bag.make_bag import find_frames, make_bag, MakeBagConfig

MODEL = ModelInfo(name='tqdm-tiny-rn', source='test checkpoint', trained=False)


@pytest.fixture(scope='module')
def predictor(tiny_checkpoint):
    return Predictor.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope='module')
def offline_report(camvid_bag, predictor):
    return evaluate_offline(camvid_bag, predictor, model=MODEL)


def test_offline_equals_direct_predictor_and_training_evaluate(
        offline_report, predictor, small_camvid, tiny_checkpoint, tmp_path):
    dataset = CamVidDataset(small_camvid, split='val')
    direct = SemSegEvaluator.for_class_table(CAMVID_11, model_table=predictor.class_table)
    for index in range(len(dataset)):
        sample = dataset[index]
        direct.process(predictor.predict(sample['image']).labels, sample['label'])
    counts = offline_report.evaluator.counts
    np.testing.assert_array_equal(counts, direct.counts)
    # Not a trivial matrix: predictions fall in a class column and in the unmapped column.
    assert np.count_nonzero(counts.sum(axis=0)) >= 2
    assert offline_report.frames_scored == offline_report.frames_total == len(dataset)

    training_evaluate = pytest.importorskip('training.evaluate')
    scaled = training_evaluate.ScaledPredictor(
        training_evaluate.load_model(tiny_checkpoint), None, InferenceOptions())
    report = training_evaluate.evaluate_dataset(scaled, dataset, label='camvid', num_overlays=0,
                                                progress=False)
    np.testing.assert_array_equal(report.evaluator.counts, offline_report.evaluator.counts)
    np.testing.assert_array_equal(report.calibration.bin_counts,
                                  offline_report.calibration.bin_counts)


def _bag_report(bag, checkpoint, output, *flags):
    """report.json of `tqdm-bag evaluate` offline on the bag with these flags."""
    assert main(['evaluate', str(bag), '-o', str(output), '--checkpoint', str(checkpoint),
                 '--num-overlays', '0', *flags]) == 0
    return json.loads((output / 'report.json').read_text())


def _dataset_report(camvid_root, checkpoint, output, *flags):
    """report.json of `python -m training.evaluate` on the same frames with these flags."""
    training_evaluate = pytest.importorskip('training.evaluate')
    assert training_evaluate.main(['--checkpoint', str(checkpoint), '--dataset',
                                   f'camvid:{camvid_root}:val', '--num-overlays', '0',
                                   '--no-progress', '--output-dir', str(output), *flags]) == 0
    return json.loads((output / 'camvid_val' / 'report.json').read_text())


def test_command_lines_agree_with_the_flags_the_readme_names(camvid_bag, small_camvid,
                                                             tiny_checkpoint, tmp_path):
    """README: training.evaluate defaults to slide / fp32, tqdm-bag evaluate to whole / auto
    (bf16 on CPUs with native bf16); with the flags the README names, the two command lines
    give the same confusion matrix and calibration on the same frames."""
    pairs = (
        (_bag_report(camvid_bag, tiny_checkpoint, tmp_path / 'bag_slide',
                     '--inference-mode', 'slide', '--precision', 'fp32'),
         _dataset_report(small_camvid, tiny_checkpoint, tmp_path / 'dataset_defaults')),
        (_bag_report(camvid_bag, tiny_checkpoint, tmp_path / 'bag_defaults'),
         _dataset_report(small_camvid, tiny_checkpoint, tmp_path / 'dataset_whole',
                         '--mode', 'whole', '--precision', 'auto')))
    for bag, dataset in pairs:
        assert (bag['model']['details']['mode'], bag['model']['details']['precision']) == (
            dataset['model']['details']['mode'], dataset['model']['details']['precision'])
        assert bag['metrics'] == dataset['metrics']
        assert bag['calibration'] == dataset['calibration']
    assert pairs[0][1]['model']['details']['mode'] == 'slide'
    assert pairs[1][0]['model']['details']['mode'] == 'whole'


def test_report_folder_holds_json_summary_and_pictures(offline_report, tmp_path):
    folder = write_report(offline_report, tmp_path / 'report')
    data = json.loads((folder / 'report.json').read_text())
    assert data['frames'] == {'total': NUM_FRAMES, 'scored': NUM_FRAMES, 'dropped': 0,
                              'dropped_frames': []}
    assert data['mode'] == 'offline' and data['source'] == offline_report.source
    assert data['metrics']['confusion_matrix'] == (
        offline_report.evaluator.confusion_matrix.tolist())
    assert data['model']['trained'] is False and 'untrained' in data['notes'][0]
    assert set(data['latency_ms']) >= {'p50', 'p95', 'p99', 'max', 'values'}
    summary = (folder / 'summary.md').read_text()
    assert '**WARNING: the model is untrained' in summary and '| mIoU |' in summary
    for name in PICTURES.values():
        assert (folder / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name
    assert sorted(p.name for p in tmp_path.iterdir()) == ['report']


def test_report_is_not_left_half_written(offline_report, tmp_path, monkeypatch):
    import tqdm_core.evaluation.figures as figures

    def broken(*args, **kwargs):
        raise RuntimeError('disk full')

    monkeypatch.setattr(figures, 'plot_per_class_iou', broken)
    with pytest.raises(RuntimeError, match='disk full'):
        write_report(offline_report, tmp_path / 'report')
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileExistsError):
        write_report(offline_report, tmp_path)


def test_missing_and_truncated_bags(tmp_path, camvid_bag, predictor):
    with pytest.raises(FileNotFoundError, match='no bag at'):
        evaluate_offline(tmp_path / 'nothing', predictor, model=MODEL)
    broken = tmp_path / 'broken'
    broken.mkdir()
    for item in camvid_bag.iterdir():
        data = item.read_bytes()
        (broken / item.name).write_bytes(data if item.suffix == '.yaml' else data[:len(data) // 3])
    with pytest.raises(BagError, match='damaged or truncated'):
        evaluate_offline(broken, predictor, model=MODEL)


def test_missing_topics(camvid_bag, predictor):
    with pytest.raises(BagError, match='has no topic /front/labels; its topics are: '):
        evaluate_offline(camvid_bag, predictor, model=MODEL,
                         config=EvaluationConfig(label_topic='/front/labels'))
    with pytest.raises(BagError, match='has no class-table topic /nope.*--gt-classes'):
        evaluate_offline(camvid_bag, predictor, model=MODEL,
                         config=EvaluationConfig(class_table_topic='/nope'))


def test_ground_truth_of_another_size_or_class_table(tmp_path, predictor):
    image = np.zeros((36, 48, 3), dtype=np.uint8)
    small = write_bag(tmp_path / 'small', image=image, class_table=CAMVID_11,
                      label=np.zeros((18, 24), dtype=np.uint8))
    with pytest.raises(BagError, match='ground truth at stamp .* is 24x18 but its image is 48x36'):
        evaluate_offline(small, predictor, model=MODEL)
    cityscapes_ids = write_bag(tmp_path / 'ids', image=image, class_table=CAMVID_11,
                               label=np.full((36, 48), 17, dtype=np.uint8))
    with pytest.raises(EvaluationError,
                       match=r"holds ids \[17\] that are not classes of .* 'camvid11'"):
        evaluate_offline(cityscapes_ids, predictor, model=MODEL)
    with pytest.raises(BagError, match="differs from the given 'cityscapes19'"):
        evaluate_offline(cityscapes_ids, predictor, model=MODEL, config=EvaluationConfig(
            ground_truth_classes=ClassTable.from_names(['road'], name='cityscapes19')))
    with pytest.raises(EvaluationError, match="no class of the model's table 'lab'"):
        FrameScorer(ground_truth_classes=CAMVID_11, num_frames=1,
                    model_classes=ClassTable.from_names(['desk', 'chair'], name='lab'))


def test_cli_writes_nothing_on_bad_input(tmp_path, capsys, tiny_checkpoint):
    bag = write_bag(tmp_path / 'bag', image=np.zeros((36, 48, 3), dtype=np.uint8),
                    class_table=CAMVID_11, label=np.full((36, 48), 40, dtype=np.uint8))
    output = tmp_path / 'report'
    assert main(['evaluate', str(bag), '-o', str(output), '--checkpoint',
                 str(tiny_checkpoint)]) == 1
    assert 'holds ids [40]' in capsys.readouterr().err
    assert main(['evaluate', str(bag), '-o', str(output)]) == 1
    assert 'needs a model: pass --checkpoint' in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bag']


def test_cli_offline_report(camvid_bag, tmp_path, capsys, tiny_checkpoint):
    output = tmp_path / 'report'
    assert main(['evaluate', str(camvid_bag), '-o', str(output), '--checkpoint',
                 str(tiny_checkpoint), '--limit', '1', '--num-overlays', '1']) == 0
    printed = capsys.readouterr().out
    assert 'frames: 1 scored of 1 with ground truth, 0 dropped' in printed
    assert f'report and pictures in {output}' in printed
    assert json.loads((output / 'report.json').read_text())['model']['trained'] is True


def test_cli_offline_report_without_overlays(camvid_bag, tmp_path, tiny_checkpoint):
    """--num-overlays 0 leaves out the overlay grid, as training.evaluate does."""
    output = tmp_path / 'report'
    assert main(['evaluate', str(camvid_bag), '-o', str(output), '--checkpoint',
                 str(tiny_checkpoint), '--limit', '1', '--num-overlays', '0']) == 0
    assert not (output / PICTURES['overlays']).exists()
    assert 'overlays' not in json.loads((output / 'report.json').read_text())['pictures']
    with pytest.raises(ValueError, match=r'num_overlays must be >= 0 \(0: no overlay picture\)'):
        EvaluationConfig(num_overlays=-1)


def test_cli_maps_its_flags_to_the_inference_options(camvid_bag, tmp_path, capsys,
                                                     tiny_checkpoint):
    output = tmp_path / 'report'
    assert main(['evaluate', str(camvid_bag), '-o', str(output), '--checkpoint',
                 str(tiny_checkpoint), '--preset', 'tqdm-tiny-rn', '--inference-mode', 'slide',
                 '--window', '64', '--stride', '48', '--scale', '0.5', '--flip', '--limit', '1']) == 0
    details = json.loads((output / 'report.json').read_text())['model']['details']
    assert (details['mode'], details['scale'], details['preset']) == ('slide', 0.5, 'tqdm-tiny-rn')
    assert details['flip'] is True
    assert main(['evaluate', str(camvid_bag), '-o', str(tmp_path / 'no'), '--checkpoint',
                 str(tiny_checkpoint), '--window', '64', '--stride', '96']) == 1
    assert ("--stride' must be at most '--window' (64)" in capsys.readouterr().err)
    assert main(['evaluate', str(camvid_bag), '-o', str(tmp_path / 'no'), '--checkpoint',
                 str(tiny_checkpoint), '--preset', 'tqdm-tiny-vit']) == 1
    assert "saved for preset 'tqdm-tiny-rn' but preset 'tqdm-tiny-vit'" in capsys.readouterr().err
    # The old flag still works (0: the checkpoint's scale), with a deprecation notice.
    assert main(['evaluate', str(camvid_bag), '-o', str(tmp_path / 'old'), '--checkpoint',
                 str(tiny_checkpoint), '--input-scale', '0', '--limit', '1']) == 0
    assert '--input-scale is deprecated' in capsys.readouterr().err
    assert not (tmp_path / 'no').exists()


def test_frame_names_keep_every_nanosecond():
    assert frame_name(1_700_000_000_000_000_001) == 'stamp 1700000000.000000001 s'


def test_overlay_rows_name_their_files_and_the_grid_says_how_many(tmp_path, predictor,
                                                                  monkeypatch):
    """Six files made into a bag, four example frames: report.json maps each frame's stamp to its
    file, the grid's rows are titled by file name (frames 0, 2, 3, 5: spread over the six), its
    title says it shows 4 of 6 frames, its legend names the ground truth's void and the
    confidence panels have a colour bar."""
    import tqdm_core.evaluation.figures as figures

    root = write_camvid(tmp_path / 'camvid', 6)  # labels 0..11: CamVid's void (11) included
    made = make_bag(find_frames(root), tmp_path / 'bag',
                    config=MakeBagConfig(start_time_ns=START_NS, stamp_jitter_ms=0.0))
    report = evaluate_offline(made.path, predictor, model=MODEL,
                              config=EvaluationConfig(frame_files=made.frame_files))
    files = [f'seq_{index:05d}.png' for index in range(6)]
    assert [(record['name'], record['source_file'], record['scored'])
            for record in report.to_json()['per_frame']] == [
        (frame_name(stamp), file, True) for stamp, file in zip(sorted(made.frame_files), files)]
    drawn = {}  # file name -> the figure that would be saved there

    def keep(figure, path, dpi):
        drawn[pathlib.Path(path).name] = figure

    monkeypatch.setattr(figures, '_save_atomically', keep)
    write_report(report, tmp_path / 'report')
    grid = drawn[PICTURES['overlays']]
    titles = [axes.get_title() for axes in grid.axes]
    assert [title for title in titles if title.startswith('seq_')] == [
        files[0], files[2], files[3], files[5]]
    assert grid.get_suptitle().endswith('showing 4 of 6 frames')
    legends = [text.get_text() for axes in grid.axes if axes.get_legend()
               for text in axes.get_legend().get_texts()]
    assert 'void (not scored)' in legends
    assert [axes.get_ylabel() for axes in grid.axes if axes.get_label() == '<colorbar>'] == [
        'confidence']
    assert '[overlays](overlays.png) (4 of 6 frames)' in (
        tmp_path / 'report' / 'summary.md').read_text()
