"""Packaging a trained model for shipping: fp16 weights, the recorded input scale, the model card metadata."""
from __future__ import annotations

import json

import pytest
import torch

from tqdm_core import create_model, load_checkpoint, save_checkpoint
from training.package_model import package_model


def test_package_keeps_the_recorded_scale_halves_the_weights_and_adds_metrics(tmp_path):
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    source = save_checkpoint(model, tmp_path / "model_final.pt", metadata={"inference_scale": 0.5})
    metrics = tmp_path / "report.json"
    metrics.write_text(json.dumps({"metrics": {"miou": 0.6, "pixel_accuracy": 0.9, "per_class": {"sky": {"iou": 0.9}}},
                                   "calibration": {"ece": 0.015}}))

    packaged = package_model(source, tmp_path / "shipped.pt", metrics_path=metrics, inference_scale=None,
                             training_command="python -m training.train", license_text="CC BY-NC 4.0")
    loaded = load_checkpoint(packaged)
    assert loaded.metadata.inference_scale == 0.5
    assert loaded.metadata.validation == {
        "miou": 0.6, "pixel_accuracy": 0.9, "iou": {"sky": 0.9}, "expected_calibration_error": 0.015}
    assert (loaded.metadata.license, loaded.metadata.source_checkpoint) == ("CC BY-NC 4.0", "model_final.pt")
    assert packaged.stat().st_size < 0.6 * source.stat().st_size  # fp16 storage
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(loaded.model.state_dict()[name], value.half().float(), rtol=0, atol=0)

    overridden = package_model(source, tmp_path / "other.pt", metrics_path=None, inference_scale=0.75,
                               training_command="", license_text="")
    assert load_checkpoint(overridden).metadata.inference_scale == 0.75


def test_packaging_onto_the_source_is_refused_and_leaves_it_intact(tmp_path):
    source = save_checkpoint(create_model("tqdm-tiny-rn", pretrained=None, seed=0), tmp_path / "model_final.pt")
    before = source.read_bytes()
    with pytest.raises(ValueError, match="is the source checkpoint"):
        package_model(source, tmp_path / "." / "model_final.pt", metrics_path=None, inference_scale=None,
                      training_command="", license_text="")
    assert source.read_bytes() == before
