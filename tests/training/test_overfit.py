"""A small preset must be able to memorise two CamVid frames: the loss, optimizer and data path learn."""
from __future__ import annotations

import cv2

from tests.training.conftest import small_config
from tqdm_core import Predictor
from tqdm_core.data import build_dataset
from training.trainer import Trainer


def test_tiny_preset_overfits_two_camvid_frames(camvid_two_frames, tmp_path):
    """100 AdamW steps (lr 3e-3, random towers, full-rate backbone) on two whole 128x96 frames.

    Scored through the Predictor on the same frames: > 90 % of the labelled pixels must be right. A random model
    scores about 1 %, predicting the most frequent class (road) about 35 %; so does a model whose loss, gradients
    or labels are wired wrongly.
    """
    config = small_config(camvid_two_frames, tmp_path / "run", "schedule.iterations=100",
                          "schedule.warmup_iterations=10", "optimizer.lr=3e-3", "optimizer.backbone_lr_mult=1.0",
                          "optimizer.weight_decay=0.0", "loss.vision_regularization=false",
                          "loss.language_regularization=false", "checkpoint_interval=100",
                          "validation.scale=0.75")
    summary = Trainer(config, progress=False).train()

    assert Predictor.from_checkpoint(summary["model_path"]).scale == 0.75  # recorded as its inference_scale
    predictor = Predictor.from_checkpoint(summary["model_path"], mode="whole", scale=1.0)
    dataset = build_dataset("camvid", camvid_two_frames, "train")
    correct = labelled = 0
    for index in range(len(dataset)):
        sample = dataset.load_sample(index)
        image = cv2.resize(sample["image"], (128, 96), interpolation=cv2.INTER_AREA)
        label = cv2.resize(sample["label"], (128, 96), interpolation=cv2.INTER_NEAREST)
        valid = label != 255
        correct += int((predictor.predict(image).labels[valid] == label[valid]).sum())
        labelled += int(valid.sum())
    assert labelled > 0.9 * 2 * 128 * 96
    assert correct / labelled > 0.90, f"pixel accuracy {correct / labelled:.3f} after 100 steps"
    assert summary["losses"]["total"] < 10.0
