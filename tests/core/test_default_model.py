"""The model shipped in the package: it loads, fits the size budget, and segments real CamVid frames sensibly."""
import pathlib

import numpy as np
from PIL import Image

from tqdm_core import CAMVID_11, Predictor, load_checkpoint
from tqdm_core.default_model import DEFAULT_CHECKPOINT, MODEL_CARD
from tqdm_core.evaluation import SemSegEvaluator

SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "data" / "camvid_sample"


def test_default_checkpoint_ships_with_its_card():
    assert DEFAULT_CHECKPOINT.is_file() and MODEL_CARD.is_file()
    assert DEFAULT_CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    checkpoint = load_checkpoint()  # no path: the default model
    assert checkpoint.model.class_table == CAMVID_11
    assert checkpoint.metadata.inference_scale == 0.5
    assert "CC BY-NC 4.0" in checkpoint.metadata.license


def test_default_model_segments_the_sample_frames():
    """The six committed CamVid val frames were never trained on; a working model gets most pixels right.

    Chance level is about 1/11 of pixels and a few mIoU points: the thresholds below fail for an untrained or
    mis-loaded model while leaving room for the small sample."""
    predictor = Predictor.from_checkpoint()  # default model, its recommended input scale
    assert predictor.scale == 0.5
    evaluator = SemSegEvaluator(num_classes=11, class_names=CAMVID_11.names)
    for image_path in sorted((SAMPLE / "val").glob("*.png")):
        image = np.asarray(Image.open(image_path).convert("RGB"))
        label = np.asarray(Image.open(SAMPLE / "valannot" / image_path.name))
        label = np.where(label == 11, 255, label).astype(np.uint8)  # CamVid void -> ignore
        result = predictor.predict(image)
        assert result.labels.shape == label.shape
        evaluator.process(result.labels, label)
    metrics = evaluator.evaluate()
    assert metrics["pixel_accuracy"] > 0.75, metrics["pixel_accuracy"]
    assert metrics["miou"] > 0.35, metrics["miou"]
