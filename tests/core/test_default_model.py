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
    assert checkpoint.metadata.inference_scale == 1.0  # full resolution: poles and signs
    assert "CC BY-NC 4.0" in checkpoint.metadata.license


def test_default_model_segments_the_sample_frames():
    """A correctly loaded model gets most pixels of the six committed CamVid frames right.

    The shipped model was trained on all 468 labelled CamVid frames, these included, so this checks loading and
    the Predictor path, not generalization (that is the model card's leave-one-sequence-out protocol). Chance
    level is about 1/11 of pixels and a few mIoU points: the thresholds fail for an untrained or mis-loaded model
    (wrong scale, colour order or normalisation)."""
    predictor = Predictor.from_checkpoint()  # default model, its recommended input scale
    assert predictor.scale == 1.0
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
