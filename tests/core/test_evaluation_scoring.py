"""The frame scorer and its report: hand-counted confusion, drops, examples, latency, the report folder."""
import json

import numpy as np
import pytest

from tqdm_core import CAMVID_11, CITYSCAPES_19, ClassTable
from tqdm_core.evaluation import (DroppedFrame, EvaluationError, FrameScorer, LabeledImage, ModelInfo, ScoredFrame,
                                  predicted_frames, score_frames, write_report)
from tqdm_core.evaluation.report import PICTURES, format_summary
from tqdm_core.inference.predictor import Prediction

TABLE = ClassTable.from_names(["road", "car"], name="two")
MODEL = ModelInfo(name="tiny", source="test", trained=True)


def frame(name, truth, labels, latency_ms=5.0, width=4):
    """A frame of 1 x width pixels; confidence 0.95 everywhere."""
    truth = np.asarray([truth], dtype=np.uint8)
    sample = LabeledImage(name=name, image=np.zeros((1, width, 3), dtype=np.uint8), ground_truth=truth)
    return ScoredFrame(sample=sample, labels=np.asarray([labels], dtype=np.uint8),
                       confidence=np.full(truth.shape, 0.95, dtype=np.float32), latency_ms=latency_ms)


def test_counts_drops_examples_and_latency_by_hand():
    """Frame a: truth road road car car, predicted road car car 255 -> (road, road), (road, car), (car, car) and
    one unlabeled car pixel. Frame c: truth 255 255 road road, predicted car car road road -> two (road, road).
    So road row = [3, 1], car row = [0, 1]; car IoU = 1 / (1 + 1 + 1), road IoU = 3 / 4."""
    scorer = FrameScorer(ground_truth_classes=TABLE, model_classes=TABLE, num_frames=3, num_overlays=2)
    frames = [frame("a", [0, 0, 1, 1], [0, 1, 1, 255], latency_ms=10.0), DroppedFrame("b"),
              frame("c", [255, 255, 0, 0], [1, 1, 0, 0], latency_ms=None)]
    score_frames(frames, scorer)
    report = scorer.report(mode="offline", source="/bags/two", model=MODEL, latency_kind="test")
    np.testing.assert_array_equal(report.evaluator.confusion_matrix, [[3, 1], [0, 1]])
    scores = report.evaluator.evaluate()
    assert scores["iou"].tolist() == pytest.approx([3 / 4, 1 / 3])
    assert report.frames_scored == 2 and report.dropped == ("b",) and report.frames_total == 3
    # Two examples spread over 3 frames: positions 0 and 2; position 2 is frame c.
    assert [o.title for o in report.overlays] == ["a", "c"]
    assert report.latencies_ms.tolist() == [10.0] and report.latency_summary()["p50"] == 10.0
    assert report.calibration.num_samples == 6  # ignore pixels are not scored
    assert report.title == "two (offline)"
    data = report.to_json()
    assert data["frames"] == {"total": 3, "scored": 2, "dropped": 1, "dropped_frames": ["b"]}
    assert data["metrics"]["confusion_matrix"] == [[3, 1], [0, 1]]


def test_errors_name_the_frame_and_what_to_do():
    scorer = FrameScorer(ground_truth_classes=TABLE, model_classes=TABLE, num_frames=1)
    with pytest.raises(EvaluationError, match="the prediction of a is 3x1 .* but its ground truth is 4x1"):
        scorer.add(0, ScoredFrame(sample=frame("a", [0, 0, 0, 0], [0, 0, 0, 0]).sample,
                                  labels=np.zeros((1, 3), np.uint8), confidence=np.zeros((1, 3), np.float32),
                                  latency_ms=None))
    with pytest.raises(EvaluationError, match=r"ground truth of a holds ids \[7\] that are not classes of"):
        scorer.add(0, frame("a", [0, 7, 0, 0], [0, 0, 0, 0]))
    with pytest.raises(EvaluationError, match="no frame of src was scored"):
        scorer.report(mode="offline", source="src", model=MODEL, latency_kind="test")
    with pytest.raises(EvaluationError, match="no class of the model's table 'lab'"):
        FrameScorer(ground_truth_classes=TABLE, num_frames=1,
                    model_classes=ClassTable.from_names(["desk", "chair"], name="lab"))


def test_predicted_frames_time_the_model_and_examples_are_shrunk():
    sample = LabeledImage(name="wide", image=np.zeros((10, 1280, 3), np.uint8),
                          ground_truth=np.zeros((10, 1280), np.uint8))

    def predict(image):
        return Prediction(labels=np.zeros(image.shape[:2], np.uint8),
                          confidence=np.ones(image.shape[:2], np.float32))

    (scored,) = predicted_frames(predict, [sample])
    assert scored.latency_ms is not None and scored.latency_ms >= 0
    scorer = FrameScorer(ground_truth_classes=TABLE, model_classes=TABLE, num_frames=1)
    scorer.add(0, scored)
    example = scorer.overlays[0]
    assert example.image.shape == (5, 640, 3) and example.prediction.shape == (5, 640)


def test_report_folder_and_untrained_warning(tmp_path):
    scorer = FrameScorer(ground_truth_classes=TABLE, model_classes=TABLE, num_frames=1)
    scorer.add(0, frame("a", [0, 0, 1, 1], [0, 0, 1, 1], width=4))
    report = scorer.report(mode="live", source="camvid_val", latency_kind="test",
                           model=ModelInfo(name="tiny", source="random", trained=False), run={"rate": np.float32(2)})
    folder = write_report(report, tmp_path / "report")
    assert sorted(p.name for p in folder.iterdir()) == sorted(["report.json", "summary.md", *PICTURES.values()])
    data = json.loads((folder / "report.json").read_text())
    assert data["notes"][0].startswith("the model is untrained") and data["run"] == {"rate": 2.0}
    assert "**WARNING: the model is untrained" in format_summary(report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    with pytest.raises(FileExistsError, match="exists"):
        write_report(report, folder)


def test_classes_without_counterpart_are_named_in_the_report(tmp_path):
    """A CamVid-11 model on Cityscapes-19 ground truth: the eight Cityscapes classes it cannot predict are listed in
    report.json and named by a warning in summary.md; a model of the ground truth's own table gets neither."""
    scorer = FrameScorer(ground_truth_classes=CITYSCAPES_19, model_classes=CAMVID_11, num_frames=1)
    road, tree = CAMVID_11.names.index("road"), CAMVID_11.names.index("tree")
    scorer.add(0, frame("a", [0, 0, 8, 3], [road, road, tree, road]))  # truth: road road vegetation wall
    report = scorer.report(mode="offline", source="cityscapes_val", model=MODEL, latency_kind="test")
    data = json.loads(json.dumps(report.to_json()))
    assert data["classes"]["without_counterpart"] == {
        "model": [], "ground_truth": ["wall", "traffic light", "terrain", "truck", "bus", "train", "motorcycle",
                                      "bicycle"]}
    assert data["metrics"]["per_class"]["vegetation"]["iou"] == 1.0  # tree is scored as vegetation
    summary = format_summary(report)
    assert ("**WARNING: the ground truth's classes wall, traffic light, terrain, truck, bus, train, motorcycle, "
            "bicycle have no counterpart in the model's table 'camvid11': the model cannot predict them") in summary
    assert len(data["notes"]) == 1

    reverse = FrameScorer(ground_truth_classes=CAMVID_11, model_classes=CITYSCAPES_19, num_frames=1)
    reverse.add(0, frame("a", [3, 3, 5, 5], [0, 0, 8, 3]))
    notes = reverse.report(mode="offline", source="camvid_val", model=MODEL, latency_kind="test").notes
    assert notes == ("the model's classes wall, terrain, truck, bus, train, motorcycle have no counterpart in the "
                     "ground truth's table 'camvid11': predicting them always counts as wrong",)

    same = FrameScorer(ground_truth_classes=TABLE, model_classes=TABLE, num_frames=1)
    same.add(0, frame("a", [0, 0, 1, 1], [0, 0, 1, 1]))
    report = same.report(mode="offline", source="two", model=MODEL, latency_kind="test")
    assert report.notes == () and report.to_json()["classes"]["without_counterpart"] == {
        "model": [], "ground_truth": []}
