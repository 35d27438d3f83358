"""training.evaluate on data/camvid_sample: a Cityscapes-19 model scored on CamVid-11 ground truth."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import tqdm_core
from tqdm_core import Predictor
from tqdm_core.data import build_dataset
from tqdm_core.evaluation import CITYSCAPES_TO_CAMVID_NAMES
from training import evaluate, plot_log

CAMVID_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "camvid_sample"


@pytest.fixture(scope="module")
def cityscapes_checkpoint(tmp_path_factory) -> Path:
    model = tqdm_core.create_model("tqdm-tiny-rn", pretrained=None, seed=3)
    return tqdm_core.save_checkpoint(model, tmp_path_factory.mktemp("model") / "tiny.pt")


def test_evaluate_writes_scores_and_pictures(cityscapes_checkpoint, tmp_path):
    output = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(cityscapes_checkpoint), "--dataset", f"camvid:{CAMVID_SAMPLE}:val",
                          "--mode", "whole", "--max-images", "2", "--num-overlays", "2", "--no-progress",
                          "--output-dir", str(output)]) == 0
    metrics = json.loads((output / "camvid_val" / "metrics.json").read_text())
    camvid = tqdm_core.CAMVID_11
    assert metrics["class_names"] == list(camvid.names) and metrics["images"] == 2
    assert len(metrics["class_mapping"]) == 19  # Cityscapes ids -> CamVid ids (255: no counterpart)
    confusion = np.asarray(metrics["confusion_matrix"])
    assert confusion.shape == (11, 11)
    assert set(metrics["per_class"]) == set(camvid.names)
    assert metrics["pixel_accuracy"] == pytest.approx(np.trace(confusion) / metrics["num_pixels"])

    # The same numbers by hand: Predictor labels, mapped to CamVid by class name, against the labels.
    predictor = Predictor.from_checkpoint(cityscapes_checkpoint, mode="whole")
    to_camvid = np.full(256, 255, dtype=np.int64)
    for model_id, name in enumerate(predictor.class_table.names):
        if name in CITYSCAPES_TO_CAMVID_NAMES:
            to_camvid[model_id] = camvid.names.index(CITYSCAPES_TO_CAMVID_NAMES[name])
    dataset = build_dataset("camvid", CAMVID_SAMPLE, "val")
    correct = labelled = 0
    for index in range(2):
        sample = dataset.load_sample(index)
        predicted = to_camvid[predictor.predict(sample["image"]).labels]
        valid = sample["label"] != 255
        correct += int((predicted[valid] == sample["label"][valid]).sum())
        labelled += int(valid.sum())
    assert metrics["num_pixels"] == labelled
    assert metrics["pixel_accuracy"] == pytest.approx(correct / labelled)

    for picture in ("per_class_iou.png", "confusion_matrix.png", "reliability.png", "overlays.png"):
        image = cv2.imread(str(output / "camvid_val" / picture))
        assert image is not None and min(image.shape[:2]) >= 100, picture
    summary = json.loads((output / "summary.json").read_text())
    assert summary["datasets"]["camvid_val"]["miou"] == metrics["miou"]


def test_dataset_argument_errors():
    with pytest.raises(Exception, match="NAME:ROOT"):
        evaluate.DatasetSpec.parse("camvid")
    with pytest.raises(Exception, match="unknown dataset 'kitti'"):
        evaluate.DatasetSpec.parse("kitti:/data/kitti")
    assert evaluate.DatasetSpec.parse("camvid:/data/camvid:val") == evaluate.DatasetSpec("camvid", "/data/camvid",
                                                                                          "val")


def test_plot_log_draws_a_png(tmp_path):
    records = [{"iteration": i, "lr": {"backbone": 1e-6, "head": 1e-5 / i}, "losses": {
        "total": 50.0 / i, "loss_cls": 2.0 / i, "loss_mask": 1.0, "loss_dice": 3.0}} for i in range(1, 6)]
    records.append({"iteration": 5, "validation": {"miou": 0.3, "pixel_accuracy": 0.8, "dataset": "camvid:val"}})
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    path = plot_log.plot_log(tmp_path)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[:2] == (800, 1200)
    with pytest.raises(FileNotFoundError, match="log.jsonl"):
        plot_log.plot_log(tmp_path / "missing")
